//! Cluster and tenant commands: clusters, tenants, their placement, pins,
//! moves (with tombstones) and aliases.

use crate::command::Outcome;
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::model::{self, Cluster, Rule, Tenant, Tombstone};
use crate::name;
use crate::placement;

use super::State;

impl State {
    pub(super) fn put_cluster(&mut self, rev: u64, cluster: &Cluster, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut c = cluster.clone().validate()?;
        if let Some(f) = &c.failover {
            if self.cluster(f).is_none() {
                return Err(CommandError::precondition("cluster.failover", format!("no cluster {f:?}")));
            }
        }
        // Verdicts outlive a put for the addresses that stay checked.
        if let (Some(old), Some(_)) = (self.cluster(&c.id), &c.check) {
            c.down = old.down.iter().copied().filter(|a| c.addresses().any(|b| b == *a)).collect();
        }
        c.revision = rev;
        fx.push(self.put(c.clone()));
        Ok(Outcome::Cluster(Box::new(c)))
    }

    /// Commit what a quorum of probers found: `down` is the cluster's new
    /// set of down addresses (the leader plans it from the revision it
    /// sends as expected).
    pub(super) fn set_health(
        &mut self,
        rev: u64,
        id: &str,
        down: &[std::net::IpAddr],
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let id = name::label("cluster", id)?;
        let Some(old) = self.cluster(&id) else {
            return Err(CommandError::not_found("cluster", &id, "cluster"));
        };
        if old.check.is_none() {
            return Err(CommandError::precondition("cluster", format!("cluster {id:?} declares no health check")));
        }
        let mut c = Cluster::clone(old);
        for (i, a) in down.iter().enumerate() {
            if !c.addresses().any(|b| b == *a) {
                return Err(CommandError::precondition(&format!("down[{i}]"), format!("{a} is not an address of cluster {id:?}")));
            }
        }
        c.down = down.to_vec();
        c.down.sort();
        c.down.dedup();
        c.revision = rev;
        fx.push(self.put(c.clone()));
        Ok(Outcome::Cluster(Box::new(c)))
    }

    pub(super) fn delete_cluster(&mut self, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        let held = self.tenants_on(&id);
        if held > 0 {
            return Err(CommandError::precondition("id", format!("cluster {id:?} still holds {held} tenant(s); move them first")));
        }
        if let Some(other) = self.clusters().find(|c| c.failover.as_deref() == Some(id.as_str())) {
            return Err(CommandError::precondition("id", format!("cluster {:?} fails over to {id:?}; change it first", other.id)));
        }
        fx.push(self.remove_existing(Kind::Cluster, &id, "id")?);
        Ok(Outcome::Deleted)
    }

    /// The id of the tenant that has `key` as an alias (not as its id).
    fn alias_owner(&self, key: &str) -> Option<&str> {
        self.tenant_by_key(key).filter(|t| t.id != key).map(|t| t.id.as_str())
    }

    pub(super) fn create_tenant(
        &mut self,
        rev: u64,
        id: &str,
        cluster: Option<&str>,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        if self.tenant(&id).is_some() {
            return Err(CommandError::exists("tenant", &id, "id"));
        }
        if let Some(owner) = self.alias_owner(&id) {
            return Err(CommandError::precondition("id", format!("{id:?} is already an alias of tenant {owner:?}")));
        }
        let (cluster, pinned) = match cluster {
            Some(c) => {
                let c = name::label("cluster", c)?;
                self.check_target_cluster(&c, "cluster", true)?;
                (c, true)
            }
            None => match placement::place(&id, self.clusters().map(|c| &**c)) {
                Some(c) => (c.id.clone(), false),
                None => return Err(CommandError::precondition("cluster", "no active, shared cluster to place the tenant on")),
            },
        };
        let t = Tenant {
            id: id.into(),
            cluster: cluster.into(),
            pinned,
            aliases: Default::default(),
            history: Default::default(),
            revision: rev,
        };
        fx.push(self.put(t.clone()));
        // The new id can take names (`{service}-{id}`) from whoever owned them.
        let reowned = self.challenges_of_key(&t.id);
        self.drop_reowned_challenges(reowned, fx);
        Ok(Outcome::Tenant(t))
    }

    pub(super) fn delete_tenant(&mut self, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        let keys: Vec<String> = self.tenant(&id).map(|t| t.keys().map(str::to_string).collect()).unwrap_or_default();
        fx.push(self.remove_existing(Kind::Tenant, &id, "id")?);
        self.drop_move(&id, fx);
        self.revoke_tenant_credentials(&id, fx);
        // Its names (id and aliases) are its no more, nor their challenges.
        let reowned = keys.iter().flat_map(|k| self.challenges_of_key(k)).collect();
        self.drop_reowned_challenges(reowned, fx);
        Ok(Outcome::Deleted)
    }

    pub(super) fn unpin_tenant(&mut self, rev: u64, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut t = self.tenant_for_update(id)?;
        t.pinned = false;
        t.revision = rev;
        Ok(self.store_tenant(t, fx))
    }

    pub(super) fn add_alias(&mut self, rev: u64, tenant: &str, alias: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut t = self.tenant_for_update(tenant)?;
        let alias = name::label("alias", alias)?;
        if self.tenant(&alias).is_some() {
            return Err(CommandError::precondition("alias", format!("{alias:?} is a tenant id")));
        }
        match self.alias_owner(&alias) {
            Some(owner) if *owner == t.id => return Ok(Outcome::Tenant(t)),
            Some(owner) => return Err(CommandError::precondition("alias", format!("{alias:?} is already an alias of tenant {owner:?}"))),
            None => {}
        }
        if let Some(meaning) = self.label_meaning(&alias) {
            return Err(CommandError::precondition("alias", format!("{alias:?} is taken: {meaning}")));
        }
        if t.aliases.len() >= model::ALIASES_MAX {
            return Err(CommandError::precondition(
                "alias",
                format!("tenant already has {} aliases, the most allowed", model::ALIASES_MAX),
            ));
        }
        t.aliases.push(alias.as_str().into());
        t.aliases.sort();
        t.revision = rev;
        let outcome = self.store_tenant(t, fx);
        let reowned = self.challenges_of_key(&alias);
        self.drop_reowned_challenges(reowned, fx);
        Ok(outcome)
    }

    pub(super) fn remove_alias(&mut self, rev: u64, tenant: &str, alias: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut t = self.tenant_for_update(tenant)?;
        let alias = name::label("alias", alias)?;
        let Some(pos) = t.aliases.iter().position(|a| *a == alias) else {
            return Err(CommandError::not_found("alias", &alias, "alias"));
        };
        t.aliases.remove(pos);
        t.revision = rev;
        let outcome = self.store_tenant(t, fx);
        let reowned = self.challenges_of_key(&alias);
        self.drop_reowned_challenges(reowned, fx);
        Ok(outcome)
    }

    /// Pin (`pin`, setting `pinned`) or move a tenant to `cluster`, recording
    /// a tombstone when its cluster changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn relocate(
        &mut self,
        rev: u64,
        at_ms: u64,
        id: &str,
        cluster: &str,
        pinned: Option<bool>,
        pin: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let mut t = self.tenant_for_update(id)?;
        let cluster = name::label("cluster", cluster)?;
        if t.cluster != cluster {
            self.check_target_cluster(&cluster, "cluster", pin)?;
            t.history.push(Tombstone { from: t.cluster.to_string(), to: cluster.clone(), revision: rev, at_ms });
            if t.history.len() > model::TOMBSTONES_MAX {
                let excess = t.history.len() - model::TOMBSTONES_MAX;
                t.history.drain(..excess);
            }
            t.cluster = cluster.into();
        } else if self.cluster(&cluster).is_none() {
            return Err(CommandError::not_found("cluster", &cluster, "cluster"));
        }
        if let Some(p) = pinned {
            t.pinned = p;
        }
        t.revision = rev;
        Ok(self.store_tenant(t, fx))
    }

    /// What a served zone already makes of the one-label name `label`, if
    /// anything: `{service}-{x}` is service `service` of tenant `x` under a
    /// `service-tenant` rule (whether or not `x` exists yet), and a label
    /// with static records, static names below it or a delegation at
    /// `<label>.<apex>` of a zone with a `tenant-host` rule is the
    /// operator's. An alias may take none of these: as an alias it would
    /// claim a name the rules give another tenant, now or once that tenant
    /// is created (and with it that name's ACME challenges), or one the
    /// operator answers. Walks every zone's rules, not every tenant.
    fn label_meaning(&self, label: &str) -> Option<String> {
        self.zones().find_map(|zone| {
            let apex = zone.apex();
            zone.spec.rules.iter().find_map(|rule| match rule {
                Rule::ServiceTenant { services, .. } => services.iter().find_map(|s| {
                    model::service_key(label, s).map(|key| {
                        format!("{label}.{apex} is service {s:?} of tenant {key:?} under the service-tenant rule of zone {apex}")
                    })
                }),
                Rule::TenantHost { .. } => {
                    let owner = format!("{label}.{apex}");
                    if zone.records_at(&owner).is_some() {
                        Some(format!("{owner} has static records in zone {apex}"))
                    } else if zone.has_descendants(&owner) {
                        Some(format!("{owner} has static names below it in zone {apex}"))
                    } else {
                        None
                    }
                }
                Rule::Acme { .. } => None,
            })
        })
    }

    fn tenant_for_update(&self, id: &str) -> Result<Tenant, CommandError> {
        let id = name::label("id", id)?;
        self.tenant(&id).map(|t| (**t).clone()).ok_or_else(|| CommandError::not_found("tenant", &id, "id"))
    }

    fn store_tenant(&mut self, t: Tenant, fx: &mut Vec<Effect>) -> Outcome {
        fx.push(self.put(t.clone()));
        Outcome::Tenant(t)
    }

    /// Can a tenant be put on `id` by an operator? Dedicated clusters take
    /// tenants only by pin; draining and down clusters take none.
    pub(super) fn check_target_cluster(&self, id: &str, field: &str, pin: bool) -> Result<(), CommandError> {
        let Some(c) = self.cluster(id) else {
            return Err(CommandError::not_found("cluster", id, field));
        };
        if c.state != model::ClusterState::Active {
            return Err(CommandError::precondition(field, format!("cluster {id:?} is {} and takes no new tenants", c.state.as_str())));
        }
        if c.dedicated && !pin {
            return Err(CommandError::precondition(field, format!("cluster {id:?} is dedicated: use pin to place a tenant there")));
        }
        Ok(())
    }
}
