//! Alerts: what a change in a node's state becomes, and how it reaches people.
//!
//! A change is written as an event and, if it alerts, as an alert in the outbox, in the
//! same transaction as the state change that caused it. The worker (a thread of its own)
//! delivers outbox alerts to each channel, retrying with backoff, and marks them settled.
//! A crash between the two loses nothing: the outbox is on disk.

pub mod channel;
pub mod config;
pub mod worker;

use crate::liveness::{self, Change, Policy};
use crate::model::{AlertRecord, Delivery, EventRecord, NodeRecord};
use crate::store::{self, Txn};
use config::Channels;
use heed::RwTxn;

/// Events older than this are dropped.
pub const EVENT_MAX_AGE_MS: i64 = 30 * 86_400_000;

/// Writes `changes` of `node` as events, and those that alert as outbox alerts for every
/// channel that wants them. Returns how many alerts were written.
pub fn record(
    txn: &mut Txn<RwTxn>,
    node: &NodeRecord,
    changes: &[Change],
    now: i64,
    channels: &Channels,
) -> Result<usize, store::Error> {
    let mut alerts = 0;
    for change in changes {
        let kind = change.kind.as_str();
        let event = EventRecord {
            id: txn.next_id()?,
            node_id: node.node_id.clone(),
            at: now,
            kind: kind.to_owned(),
            check: change.check.clone(),
            detail: change.detail.clone(),
        };
        txn.put_event(&event)?;
        log::info!("node {} ({}): {kind}: {}", node.name, node.node_id, change.detail);
        if !change.kind.alerts() {
            continue;
        }
        let deliveries: Vec<Delivery> = channels
            .list
            .iter()
            .filter(|c| c.wants(kind, &node.all_tags()))
            .map(|c| Delivery {
                channel: c.name.clone(),
                state: "pending".into(),
                attempts: 0,
                next_attempt: now,
                last_error: None,
                delivered_at: None,
            })
            .collect();
        if deliveries.is_empty() {
            continue;
        }
        let alert = AlertRecord {
            id: txn.next_id()?,
            kind: kind.to_owned(),
            node_id: node.node_id.clone(),
            name: node.name.clone(),
            hostname: node.hostname.clone(),
            tags: node.all_tags(),
            check: change.check.clone(),
            detail: change.detail.clone(),
            at: now,
            down_since: node.down_since.or_else(|| (kind == "recovered").then_some(now)),
            deliveries,
        };
        txn.put_alert(&alert)?;
        alerts += 1;
    }
    Ok(alerts)
}

/// Looks at every node whose deadline has passed. Returns how many alerts were written.
pub fn sweep(txn: &mut Txn<RwTxn>, now: i64, policy: &Policy, channels: &Channels) -> Result<usize, store::Error> {
    let mut alerts = 0;
    for (_, node_id) in txn.due_nodes(now)? {
        let Some(mut node) = txn.node(&node_id)? else { continue };
        let previous = node.deadline;
        let changes = liveness::on_deadline(&mut node, now, policy);
        alerts += record(txn, &node, &changes, now, channels)?;
        txn.save_node(&node, previous)?;
    }
    Ok(alerts)
}
