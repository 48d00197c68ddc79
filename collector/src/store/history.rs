//! What happened and what is kept: events, alerts and their outbox (with the `settled` and
//! `outbox_by_node` indexes), the audit log, and `meta` (settings and the id counter).

use super::{
    decode, outbox_by_node_key, setting_key, storable, Error, ReadTxn, RwTxn, Scan, Txn, ALERTS_KEPT, AUDIT_KEPT,
    EVENTS_PER_NODE,
};
use crate::model::{AlertRecord, AuditRecord, EventRecord};
use miniserde::{Deserialize, Serialize};

/// The names of the settings kept in `meta`, read with [`Txn::setting`].
pub mod setting {
    /// The `liveness::Policy` the last `serve` ran with, so the CLI judges nodes as it does.
    pub const POLICY: &str = "policy";
    /// The channels file the last `serve` read (an absolute path), for `alert test`.
    pub const CHANNELS_FILE: &str = "channels_file";
    /// Where the last `serve` is reached (`--public-url`, else its address), for the ping
    /// URLs the CLI prints.
    pub const PUBLIC_URL: &str = "public_url";
    /// When the running collector last said it was alive (Unix ms, its clock).
    pub const ALIVE_AT: &str = "alive_at";
    /// Since when this collector has been watching, and how long it was away before (`liveness::Watching`).
    pub const WATCHING: &str = "watching";
    /// How many alerts were dropped unsent by the per-node outbox cap, ever.
    pub const ALERTS_DROPPED: &str = "alerts_dropped";
    /// The key host JWTs are signed with (hex), made once by the first registration
    /// (`api/wrenn.rs`). A secret: never listed or logged.
    pub const HOST_JWT_SECRET: &str = "host_jwt_secret";
}

impl<T: ReadTxn> Txn<'_, T> {
    /// Up to `limit` audit entries older than entry `before` (or the newest), newest
    /// first; and whether older ones follow.
    pub fn audit_page(&self, before: Option<u64>, limit: usize) -> Result<(Vec<AuditRecord>, bool), Error> {
        let end = before.map(u64::to_be_bytes);
        let range = (
            std::ops::Bound::Unbounded,
            end.as_ref().map_or(std::ops::Bound::Unbounded, |k| std::ops::Bound::Excluded(&k[..])),
        );
        let mut out = Vec::new();
        for entry in self.dbs.audit.rev_range(self.raw.ro(), &range)? {
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(decode(entry?.1)?);
        }
        Ok((out, false))
    }

    /// Events after `since` (Unix ms), oldest first, for one node or all, at most `limit`.
    pub fn events(&self, node_id: Option<&str>, since: i64, limit: usize) -> Result<Vec<EventRecord>, Error> {
        let txn = self.raw.ro();
        let mut out: Vec<EventRecord> = Vec::new();
        let mut take = |value: &[u8]| -> Result<(), Error> {
            let event: EventRecord = decode(value)?;
            if event.at > since {
                out.push(event);
            }
            Ok(())
        };
        match node_id {
            Some(id) if !storable(id.as_bytes()) => {}
            Some(id) => {
                for entry in self.dbs.events.prefix_iter(txn, id.as_bytes())? {
                    take(entry?.1)?;
                }
            }
            None => {
                for entry in self.dbs.events.iter(txn)? {
                    take(entry?.1)?;
                }
            }
        }
        out.sort_by_key(|e| (e.at, e.id));
        out.truncate(limit);
        Ok(out)
    }

    /// A setting kept in `meta` (see [`setting`]); `None` if never written.
    pub fn setting<V: Deserialize>(&self, name: &str) -> Result<Option<V>, Error> {
        self.get(self.dbs.meta, setting_key(name).as_bytes())
    }

    /// The newest alerts first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.alerts.rev_iter(self.raw.ro())?.take(limit) {
            out.push(decode(entry?.1)?);
        }
        Ok(out)
    }

    pub fn alert(&self, id: u64) -> Result<Option<AlertRecord>, Error> {
        self.get(self.dbs.alerts, &id.to_be_bytes())
    }

    /// The ids of alerts not yet settled, oldest first.
    pub fn outbox(&self) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for entry in self.dbs.outbox.iter(self.raw.ro())? {
            let key = entry?.0;
            out.push(u64::from_be_bytes(key.try_into().map_err(|_| Error::Corrupt("outbox key".into()))?));
        }
        Ok(out)
    }

    /// The ids of one node's alerts in the outbox, oldest first.
    pub fn outbox_of(&self, node_id: &str) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        if !storable(node_id.as_bytes()) {
            return Ok(out);
        }
        for entry in self.dbs.outbox_by_node.prefix_iter(self.raw.ro(), node_id.as_bytes())? {
            let key = entry?.0;
            // The prefix also finds longer node ids that start with this one; the length tells them apart.
            if key.len() != node_id.len() + 8 {
                continue;
            }
            let id: [u8; 8] =
                key[node_id.len()..].try_into().map_err(|_| Error::Corrupt("outbox_by_node key".into()))?;
            out.push(u64::from_be_bytes(id));
        }
        Ok(out)
    }
}

impl Txn<'_, RwTxn<'_>> {
    /// Writes a setting into `meta` (see [`setting`]).
    pub fn put_setting<V: Serialize>(&mut self, name: &str, value: &V) -> Result<(), Error> {
        self.put(self.dbs.meta, setting_key(name).as_bytes(), value)
    }

    /// How many unsettled alerts this transaction put in the outbox.
    pub fn alerts_written(&self) -> usize {
        self.alerts_written
    }

    /// A fresh id for an event or alert, increasing across restarts.
    pub fn next_id(&mut self) -> Result<u64, Error> {
        let last = match self.dbs.meta.get(&self.raw, b"next_id")? {
            Some(bytes) => u64::from_be_bytes(bytes.try_into().map_err(|_| Error::Corrupt("next_id".into()))?),
            None => 0,
        };
        self.put_bytes(self.dbs.meta, b"next_id", &(last + 1).to_be_bytes())?;
        Ok(last + 1)
    }

    /// Stores an event, dropping the node's oldest beyond [`EVENTS_PER_NODE`].
    pub fn put_event(&mut self, event: &EventRecord) -> Result<(), Error> {
        let mut key = event.node_id.clone().into_bytes();
        key.extend_from_slice(&event.id.to_be_bytes());
        self.put(self.dbs.events, &key, event)?;
        let count = self.dbs.events.prefix_iter(&self.raw, event.node_id.as_bytes())?.count();
        if count > EVENTS_PER_NODE {
            let mut excess = count - EVENTS_PER_NODE;
            self.delete_scan(self.dbs.events, Some(event.node_id.as_bytes()), |_, _| {
                if excess == 0 {
                    return Ok(Scan::Stop);
                }
                excess -= 1;
                Ok(Scan::Delete)
            })?;
        }
        Ok(())
    }

    /// Drops events that happened before `cutoff` (Unix ms); returns how many.
    pub fn prune_events(&mut self, cutoff: i64) -> Result<usize, Error> {
        self.delete_scan(self.dbs.events, None, |_, value| {
            let event: EventRecord = decode(value)?;
            Ok(if event.at < cutoff { Scan::Delete } else { Scan::Keep })
        })
    }

    /// Stores an alert; an unsettled one goes into the outbox, a settled one leaves it.
    /// Past [`ALERTS_KEPT`] settled alerts, the oldest settled one is dropped: the first key
    /// of `settled`, never a walk over the alerts.
    pub fn put_alert(&mut self, alert: &AlertRecord) -> Result<(), Error> {
        let key = alert.id.to_be_bytes();
        let by_node = outbox_by_node_key(&alert.node_id, alert.id);
        self.put(self.dbs.alerts, &key, alert)?;
        if alert.is_settled() {
            self.delete(self.dbs.outbox, &key)?;
            if storable(&by_node) {
                self.delete(self.dbs.outbox_by_node, &by_node)?;
            }
            self.put_bytes(self.dbs.settled, &key, &[])?;
        } else {
            self.put_bytes(self.dbs.outbox, &key, &[])?;
            if storable(&by_node) {
                self.put_bytes(self.dbs.outbox_by_node, &by_node, &[])?;
            }
            self.alerts_written += 1;
        }
        while self.dbs.settled.len(&self.raw)? as usize > ALERTS_KEPT {
            let Some((oldest, _)) = self.dbs.settled.first(&self.raw)? else { break };
            let oldest = oldest.to_vec();
            self.delete(self.dbs.settled, &oldest)?;
            self.delete(self.dbs.alerts, &oldest)?;
        }
        Ok(())
    }

    /// Builds `settled` and `outbox_by_node` from `alerts` and `outbox` when they disagree:
    /// once, for a store written before they existed.
    pub(super) fn index_alerts(&mut self) -> Result<(), Error> {
        let (alerts, outbox) = (self.dbs.alerts.len(&self.raw)?, self.dbs.outbox.len(&self.raw)?);
        let (settled, by_node) = (self.dbs.settled.len(&self.raw)?, self.dbs.outbox_by_node.len(&self.raw)?);
        if settled + outbox == alerts && by_node == outbox {
            return Ok(());
        }
        self.clear(self.dbs.settled)?;
        self.clear(self.dbs.outbox_by_node)?;
        let mut index = Vec::new();
        for entry in self.dbs.alerts.iter(&self.raw)? {
            let (key, value) = entry?;
            let pending = self.dbs.outbox.get(&self.raw, key)?.is_some();
            // A record this version cannot read is left out of the per-node index, not fatal.
            let node_id = pending.then(|| decode::<AlertRecord>(value).ok().map(|a| a.node_id)).flatten();
            index.push((key.to_vec(), pending, node_id));
        }
        for (key, pending, node_id) in index {
            if !pending {
                self.put_bytes(self.dbs.settled, &key, &[])?;
            } else if let Some(node_id) = node_id {
                let id = u64::from_be_bytes(key.as_slice().try_into().map_err(|_| Error::Corrupt("alert key".into()))?);
                let by_node = outbox_by_node_key(&node_id, id);
                if storable(&by_node) {
                    self.put_bytes(self.dbs.outbox_by_node, &by_node, &[])?;
                }
            }
        }
        log::info!("indexed {alerts} alerts ({outbox} waiting) for trimming and the per-node outbox cap");
        Ok(())
    }

    /// Appends an entry to the audit log (its id is assigned here), dropping the oldest
    /// beyond [`AUDIT_KEPT`]: one, as each entry comes.
    pub fn put_audit(&mut self, mut entry: AuditRecord) -> Result<(), Error> {
        entry.id = self.next_id()?;
        self.put(self.dbs.audit, &entry.id.to_be_bytes(), &entry)?;
        if self.dbs.audit.len(&self.raw)? as usize > AUDIT_KEPT {
            if let Some(oldest) = self.dbs.audit.first(&self.raw)?.map(|(key, _)| key.to_vec()) {
                self.delete(self.dbs.audit, &oldest)?;
            }
        }
        Ok(())
    }

    /// Drops audit entries made before `cutoff`; returns how many.
    pub fn prune_audit(&mut self, cutoff: i64) -> Result<usize, Error> {
        self.delete_while(self.dbs.audit, |_, value| Ok(decode::<AuditRecord>(value)?.at < cutoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    fn alert(id: u64, node: &str, pending: bool) -> AlertRecord {
        use crate::model::{Delivery, DeliveryState, EventKind};
        let state = if pending { DeliveryState::Pending } else { DeliveryState::Delivered };
        AlertRecord {
            id,
            kind: EventKind::Offline,
            node_id: node.into(),
            name: node.into(),
            hostname: "h".into(),
            tags: Vec::new(),
            check: None,
            checks: None,
            detail: String::new(),
            at: 0,
            down_since: None,
            deliveries: vec![Delivery {
                channel: "hook".into(),
                state,
                attempts: 0,
                next_attempt: 0,
                last_error: None,
                answered: None,
                delivered_at: None,
            }],
        }
    }

    /// The history keeps the newest settled alerts; waiting ones are never dropped by it,
    /// and a store from before the indexes gets them when opened.
    #[test]
    fn settled_alerts_are_trimmed_oldest_first_and_waiting_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(dir.path(), 256 << 20);
        let store = Store::open(&config).unwrap();
        let extra = 10u64;
        store
            .write(|txn| {
                for id in 1..=20 {
                    txn.put_alert(&alert(id, if id % 2 == 0 { "node-a" } else { "node-b" }, true))?;
                }
                for id in 21..=20 + ALERTS_KEPT as u64 + extra {
                    txn.put_alert(&alert(id, "node-a", false))?;
                }
                Ok(())
            })
            .unwrap();
        let (outbox, of_a, oldest_settled, newest) = store
            .read(|txn| Ok((txn.outbox()?, txn.outbox_of("node-a")?, txn.alert(21 + extra - 1)?, txn.alerts(1)?)))
            .unwrap();
        assert_eq!(outbox, (1..=20).collect::<Vec<u64>>(), "waiting alerts were dropped");
        assert_eq!(of_a, (2..=20).step_by(2).collect::<Vec<u64>>());
        assert!(oldest_settled.is_none(), "the oldest settled alerts should be gone");
        assert_eq!(newest[0].id, 20 + ALERTS_KEPT as u64 + extra);
        assert_eq!(store.read(|txn| txn.alerts(usize::MAX)).unwrap().len(), 20 + ALERTS_KEPT);

        // A store written before `settled` and `outbox_by_node` existed.
        store
            .write(|txn| {
                txn.clear(txn.dbs.settled)?;
                txn.clear(txn.dbs.outbox_by_node)
            })
            .unwrap();
        drop(store);
        let store = Store::open(&config).unwrap();
        assert_eq!(store.read(|txn| txn.outbox_of("node-b")).unwrap(), (1..=19).step_by(2).collect::<Vec<u64>>());
        store.write(|txn| txn.put_alert(&alert(100_000, "node-c", false))).unwrap();
        assert!(store.read(|txn| txn.alert(21 + extra)).unwrap().is_none(), "trimming works after the rebuild");
    }

    fn event(id: u64, node: &str, at: i64) -> EventRecord {
        use crate::model::EventKind;
        EventRecord {
            id,
            node_id: node.into(),
            at,
            kind: EventKind::Offline,
            check: None,
            detail: String::new(),
            held: None,
        }
    }

    /// A node's events past [`EVENTS_PER_NODE`] go oldest first, and no other node's; pruning
    /// drops what is older than the cutoff, and a prune that finds nothing commits nothing.
    #[test]
    fn events_and_audit_entries_are_dropped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        let many = EVENTS_PER_NODE as i64 + 3;
        store
            .write(|txn| {
                for (node, count) in [("node-a", many), ("node-b", 10)] {
                    for at in 1..=count {
                        let id = txn.next_id()?;
                        txn.put_event(&event(id, node, at))?;
                    }
                }
                for at in [10, 20, 30] {
                    txn.put_audit(AuditRecord { at, ..Default::default() })?;
                }
                Ok(())
            })
            .unwrap();
        let kept = |node: &str| {
            let events = store.read(|txn| txn.events(Some(node), i64::MIN, usize::MAX)).unwrap();
            (events.len(), events[0].at)
        };
        assert_eq!(kept("node-a"), (EVENTS_PER_NODE, 4));
        assert_eq!(kept("node-b"), (10, 1));

        let pruned = store.write(|txn| Ok((txn.prune_events(6)?, txn.prune_audit(25)?))).unwrap();
        assert_eq!(pruned, (2 + 5, 2));
        assert_eq!(kept("node-a"), (EVENTS_PER_NODE - 2, 6));
        assert_eq!(kept("node-b"), (5, 6));
        let audit = store.read(|txn| txn.audit_page(None, 10)).unwrap().0;
        assert_eq!(audit.iter().map(|entry| entry.at).collect::<Vec<_>>(), [30]);

        let before = store.env.info().last_txn_id;
        let pruned = store.write(|txn| Ok((txn.prune_events(6)?, txn.prune_audit(25)?))).unwrap();
        assert_eq!(pruned, (0, 0));
        assert_eq!(store.env.info().last_txn_id, before, "a prune that dropped nothing committed");
    }
}
