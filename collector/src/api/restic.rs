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

/// `GET /api/hosts`: every node, by `hostname`, and the most recently enrolled first of
/// those with the same one: restic-manager's poll takes the first host of the name it
/// minted for, which after a host was set up again is the new node, not the one left behind.
/// Nodes are read one at a time, so the whole fleet's records are never in memory at
/// once: only the small entries answered.
pub(super) fn hosts<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut hosts: Vec<(i64, Host)> = Vec::new();
    txn.each_node(|node| {
        let host = Host {
            status: node.status(ctx.now_ms, ctx.status_grace_ms(&node)).as_str(),
            host_id: node.node_id.clone(),
            machine_hostname: node.hostname.clone(),
            tags: node.all_tags(),
            hostname: node.name,
            repo_status: "ready",
        };
        hosts.push((node.enrolled_at, host));
    })?;
    hosts.sort_by(|(a_at, a), (b_at, b)| a.hostname.cmp(&b.hostname).then(b_at.cmp(a_at)));
    let hosts: Vec<Host> = hosts.into_iter().map(|(_, host)| host).collect();
    Ok(Reply::json(200, &hosts))
}
