//! Nodes: the node table, a node's own grace, and enrolment tokens.

use super::{cli_audit, now_ms, open_existing_store, open_store, random_failed, Failure};
use crate::clock::Clock;
use crate::liveness::{Policy, Watching};
use crate::model::{EnrollTokenRecord, NodeRecord};
use crate::secret::{self, ENROLL_PREFIX};
use crate::store::setting;
use hearth_wire::format_rfc3339;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub(super) fn token_create(
    data_dir: &Path,
    ttl: Duration,
    name: Option<String>,
    tags: Vec<String>,
    node: Option<String>,
) -> Result<(), Failure> {
    let store = open_store(data_dir, None)?;
    let token = secret::new_secret(ENROLL_PREFIX).map_err(random_failed)?;
    let now = now_ms();
    let record = EnrollTokenRecord {
        id: secret::new_id().map_err(random_failed)?,
        name,
        tags,
        node_id: node.clone(),
        hostname: None,
        created_by: Some("cli".into()),
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        used_at: None,
        used_by: None,
    };
    let found = store
        .write(|txn| {
            if let Some(id) = &node {
                if txn.node(id)?.is_none() {
                    return Ok(false);
                }
            }
            txn.put_enroll_token(&secret::hash(&token), &record)?;
            let detail = format!("enrolment token, valid until {}", format_rfc3339(record.expires_at));
            txn.put_audit(cli_audit("token_minted", &record.id, detail))?;
            Ok(true)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !found {
        return Err(no_node(node.as_deref().unwrap_or_default()));
    }
    println!("{token}");
    eprintln!(
        "enrolment token {} is valid until {}; on the node run: hearth-agent enroll --token <token> --collector <URL>",
        record.id,
        format_rfc3339(record.expires_at)
    );
    Ok(())
}

pub(super) fn node_set(data_dir: &Path, node_id: &str, grace_secs: Option<u64>) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let found = store
        .write(|txn| {
            let Some(mut node) = txn.node(node_id)? else { return Ok(None) };
            let previous = node.deadline;
            node.grace_secs = grace_secs;
            // The running collector judges the node again at its next sweep, with its own settings.
            if previous.is_some() {
                node.deadline = Some(now_ms());
            }
            txn.save_node(&node, previous)?;
            // What the grace comes to with the policy `serve` runs with.
            let policy: Policy = txn.setting(setting::POLICY)?.unwrap_or_default();
            Ok(Some((policy.grace_ms(&node) / 1000, node.interval_secs())))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    let Some((used, interval)) = found else { return Err(no_node(node_id)) };
    match grace_secs {
        Some(secs) if used > secs => println!(
            "node {node_id} now has {secs} s of grace; it beats every {interval} s, and grace is never under 2 \
             intervals, so it gets {used} s"
        ),
        Some(secs) => println!("node {node_id} now has {secs} s of grace"),
        None => println!("node {node_id} uses the default grace again ({used} s)"),
    }
    Ok(())
}

/// Prints the node table, or with `json` the nodes as the API shows them, judged as
/// `serve` judges them: with the settings it last ran with, unless flags say otherwise.
pub(super) fn list(
    data_dir: &Path,
    json: bool,
    grace_secs: Option<u64>,
    min_down_secs: Option<u64>,
) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let (nodes, served_with, watching) = store
        .read(|txn| {
            let watching = txn.setting::<Watching>(setting::WATCHING)?.unwrap_or_default();
            Ok((txn.nodes()?, txn.setting::<Policy>(setting::POLICY)?, watching))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    let mut policy = served_with.unwrap_or_default();
    policy.grace_secs = grace_secs.or(policy.grace_secs);
    policy.min_down_secs = min_down_secs.or(policy.min_down_secs);
    let mut out = std::io::stdout().lock();
    let now = Clock::from_env().now_ms(); // the clock `serve` reads
    let printed = if json {
        let views: Vec<_> = nodes.iter().map(|n| n.view(now, policy.status_grace_ms(n, watching.since))).collect();
        writeln!(out, "{}", miniserde::json::to_string(&views))
    } else {
        out.write_all(node_table(&nodes, now, &policy, watching.since).as_bytes())
    };
    // A closed pipe (`| head`) is not a failure.
    match printed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn no_node(id: &str) -> Failure {
    Failure::Failed(format!("no node has the id {id}; see `hearth-collector nodes`"))
}

/// The node table for a terminal, judged by a collector watching since `watching_since`.
pub fn node_table(nodes: &[NodeRecord], now: i64, policy: &Policy, watching_since: i64) -> String {
    let mut rows = vec![
        ["NAME", "STATUS", "LAST SEEN", "SEQ", "HOSTNAME", "ARCH", "VERSION", "AUTH", "NODE ID"].map(String::from)
    ];
    for node in nodes {
        let view = node.view(now, policy.status_grace_ms(node, watching_since));
        let last_seen = node.last_seen.map_or_else(|| "never".to_owned(), |seen| ago(now - seen));
        rows.push([
            view.name,
            view.status.to_owned(),
            last_seen,
            view.seq.map_or_else(|| "-".into(), |s| s.to_string()),
            view.hostname,
            view.arch.unwrap_or_else(|| "-".into()),
            view.agent_version.unwrap_or_else(|| "-".into()),
            miniserde::json::to_string(&view.auth).trim_matches('"').to_owned(),
            view.node_id,
        ]);
    }
    super::text_table(&rows)
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
pub(super) fn ago(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        for (ms, text) in
            [(0, "0s ago"), (59_999, "59s ago"), (60_000, "1m ago"), (7_200_000, "2h ago"), (-5, "0s ago")]
        {
            assert_eq!(ago(ms), text);
        }
    }
}
