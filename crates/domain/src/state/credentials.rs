//! Credential commands: create and revoke API credentials (only the hash
//! of a token is ever stored), and create and delete TSIG keys.

use crate::command::Outcome;
use crate::credential::{self, Credential};
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::tsig::{self, TsigKey};

use super::State;

impl State {
    pub(super) fn create_credential(
        &mut self,
        rev: u64,
        at_ms: u64,
        credential: &Credential,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let mut c = credential.clone().validate()?;
        if self.credential(&c.id).is_some() {
            return Err(CommandError::exists("credential", &c.id, "id"));
        }
        if self.tables.len(Kind::Credential) >= credential::CREDENTIALS_MAX {
            return Err(CommandError::precondition(
                "id",
                format!("{} credentials are stored, the most allowed: revoke some first", credential::CREDENTIALS_MAX),
            ));
        }
        if let credential::Scope::Tenant(t) = &c.scope {
            if self.tenant(t).is_none() {
                return Err(CommandError::not_found("tenant", t, "tenant"));
            }
        }
        c.created_at_ms = at_ms;
        c.revision = rev;
        fx.push(self.put(c.clone()));
        Ok(Outcome::Credential(Box::new(c)))
    }

    pub(super) fn revoke_credential(&mut self, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        fx.push(self.remove_existing(Kind::Credential, &id.to_ascii_lowercase(), "id")?);
        Ok(Outcome::Deleted)
    }

    /// Revoke every credential and TSIG key scoped to tenant `id` (the tenant
    /// is being deleted: a tenant created later under the same id must not
    /// inherit them).
    pub(super) fn revoke_tenant_credentials(&mut self, id: &str, fx: &mut Vec<Effect>) {
        let scope = credential::Scope::Tenant(id.to_string());
        let orphaned: Vec<String> = self.credentials().filter(|c| c.scope == scope).map(|c| c.id.clone()).collect();
        for c in orphaned {
            fx.push(self.set(Kind::Credential, &c, None));
        }
        let keys: Vec<String> = self.tsig_keys().filter(|k| k.scope == scope).map(|k| k.name.clone()).collect();
        for k in keys {
            fx.push(self.set(Kind::TsigKey, &k, None));
        }
    }
}

impl State {
    pub(super) fn create_tsig_key(&mut self, rev: u64, at_ms: u64, key: &TsigKey, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut k = key.clone().validate()?;
        if self.tsig_key(&k.name).is_some() {
            return Err(CommandError::exists("TSIG key", &k.name, "name"));
        }
        if self.tables.len(Kind::TsigKey) >= tsig::TSIG_KEYS_MAX {
            return Err(CommandError::precondition(
                "name",
                format!("{} TSIG keys are stored, the most allowed: delete some first", tsig::TSIG_KEYS_MAX),
            ));
        }
        if let credential::Scope::Tenant(t) = &k.scope {
            if self.tenant(t).is_none() {
                return Err(CommandError::not_found("tenant", t, "tenant"));
            }
        }
        k.created_at_ms = at_ms;
        k.revision = rev;
        fx.push(self.put(k.clone()));
        Ok(Outcome::TsigKey(Box::new(k)))
    }

    pub(super) fn delete_tsig_key(&mut self, name: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let name = tsig::key_name("name", name)?;
        fx.push(self.remove_existing(Kind::TsigKey, &name, "name")?);
        Ok(Outcome::Deleted)
    }
}
