//! Zone commands: put and delete a zone.

use std::sync::Arc;

use crate::command::Outcome;
use crate::error::CommandError;
use crate::kind::{Effect, Kind, Value};
use crate::model::{Zone, ZoneNode, ZoneSpec};
use crate::name;
use crate::record::Record;

use super::State;

impl State {
    /// Write a zone whole: its spec, and of its nodes those whose records
    /// changed (a zone written again with one record more writes one node).
    pub(super) fn put_zone(&mut self, rev: u64, at_ms: u64, spec: &ZoneSpec, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let mut z = Zone::compile(spec, rev)?;
        self.check_signing(&z.spec)?;
        let apex = z.apex().to_string();
        let compiled = z.spec.clone();
        let new = z.nodes().clone();
        let old = self.zone(&apex).map(|z| z.nodes().clone()).unwrap_or_default();
        z.clear_nodes();
        fx.push(self.put(z));
        for (k, n) in &new {
            if old.get(k).is_none_or(|o| o.records != n.records) {
                fx.push(self.put(Value::ZoneNode(n.clone())));
            }
        }
        for (k, o) in &old {
            if !new.contains_key(k) {
                fx.push(self.set(Kind::ZoneNode, &o.key, None));
            }
        }
        self.sign_zone(rev, at_ms, &apex, &compiled, fx);
        self.recheck_zone_challenges(&apex, fx);
        Ok(Outcome::Zone { apex })
    }

    pub(super) fn delete_zone(&mut self, apex: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", apex)?;
        let nodes = self.zone(&apex).map(|z| z.nodes().clone()).unwrap_or_default();
        fx.push(self.remove_existing(Kind::Zone, &apex, "apex")?);
        for n in nodes.values() {
            fx.push(self.set(Kind::ZoneNode, &n.key, None));
        }
        self.drop_signing(&apex, fx);
        self.recheck_zone_challenges(&apex, fx);
        Ok(Outcome::Deleted)
    }

    /// Write the static records of the names `nodes` gives (each name's
    /// records as they become, none to remove them), checked as a zone
    /// write checks them, for an RFC 2136 update: the zone itself is not
    /// written, so its size does not matter to the cost.
    pub(super) fn put_nodes(
        &mut self,
        rev: u64,
        apex: &str,
        nodes: Vec<(String, Vec<Record>)>,
        fx: &mut Vec<Effect>,
    ) -> Result<(), CommandError> {
        let Some(zone) = self.zone(apex) else { return Err(CommandError::not_found("zone", apex, "apex")) };
        // Checked one by one against the zone as each leaves it, so the
        // limits count every change; written only when all pass.
        let mut staged = (**zone).clone();
        let mut writes = Vec::with_capacity(nodes.len());
        for (owner, records) in nodes {
            let node = staged.node(&owner, records, rev)?.map(Arc::new);
            if staged.records_at(&owner).unwrap_or(&[]) == node.as_ref().map_or(&[][..], |n| n.records.as_slice()) {
                continue;
            }
            staged.set_node(name::tree_key(&owner), node.clone());
            writes.push((ZoneNode::key_of(apex, &owner), node));
        }
        if writes.is_empty() {
            return Ok(());
        }
        for (key, node) in writes {
            fx.push(self.set(Kind::ZoneNode, &key, node.map(Value::ZoneNode)));
        }
        self.recheck_zone_challenges(apex, fx);
        Ok(())
    }

    /// A zone's rules, static records and cut decide who owns the names
    /// in it: after a zone write, the challenges inside it whose name
    /// changed owner go (the names outside the apex are not affected).
    fn recheck_zone_challenges(&mut self, apex: &str, fx: &mut Vec<Effect>) {
        let inside = self.challenges_below(apex).collect();
        self.drop_reowned_challenges(inside, fx);
    }
}
