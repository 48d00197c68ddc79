//! What restic-manager's onboarding reads beyond Hearth's own API: its health poll,
//! `GET /api/hosts`, a bare array of hosts.
//!
//! Hearth keeps no backup repositories, so there is no repository to initialise:
//! `repo_status` is always `ready`, and the poll waits on `status` alone.

use super::{Context, Handled, Reply};
use crate::store::{ReadTxn, Txn};
use miniserde::Serialize;

#[derive(Serialize)]
struct Host {
    host_id: String,
    /// The node's name: restic-manager finds its host by the hostname given when the
    /// token was minted, which enrolment makes the node's name.
    hostname: String,
    /// What the machine calls itself.
    machine_hostname: String,
    /// The node's status: `pending`, `online`, `late`, `offline` or `stopped`.
    status: &'static str,
    repo_status: &'static str,
    tags: Vec<String>,
}

/// `GET /api/hosts`: every node, in id order. Nodes are read one at a time, so the whole
/// fleet's records are never in memory at once: only the small entries answered.
pub(super) fn hosts<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut hosts: Vec<Host> = Vec::new();
    txn.each_node(|node| {
        hosts.push(Host {
            status: node.status(ctx.now_ms, ctx.status_grace_ms(&node)).as_str(),
            host_id: node.node_id.clone(),
            machine_hostname: node.hostname.clone(),
            tags: node.all_tags(),
            hostname: node.name,
            repo_status: "ready",
        })
    })?;
    Ok(Reply::json(200, &hosts))
}
