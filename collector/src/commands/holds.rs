//! `maintenance add|list|remove`, `silence add|list|remove` and `node ack`: holding alerts
//! back from the command line, with the rules the API uses (`maintenance.rs`).

use super::{cli_audit, open_existing_store, random_failed, Failure};
use crate::clock::Clock;
use crate::maintenance::{self, describe_silence, describe_window, HoldKind};
use crate::model::{MaintenanceRecord, SilenceRecord};
use crate::secret;
use hearth_wire::{format_rfc3339, parse_rfc3339};
use std::path::Path;
use std::time::Duration;

/// What `maintenance add` was given.
#[derive(Debug, Default)]
pub struct WindowFlags {
    pub reason: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub cron: Option<String>,
    pub duration: Option<Duration>,
    pub time_zone: Option<String>,
    pub nodes: Vec<String>,
    pub tags: Vec<String>,
}

/// The clock `serve` reads (a test moves it with `HEARTH_CLOCK_FILE`).
fn now() -> i64 {
    Clock::from_env().now_ms()
}

fn time(flag: &str, text: Option<String>) -> Result<Option<i64>, Failure> {
    text.map(|t| {
        parse_rfc3339(&t).ok_or_else(|| {
            Failure::Config(format!("{flag} takes an RFC 3339 time like 2026-12-01T02:00:00Z, not `{t}`"))
        })
    })
    .transpose()
}

pub(super) fn maintenance_add(data_dir: &Path, flags: WindowFlags) -> Result<(), Failure> {
    let now = now();
    let record = MaintenanceRecord {
        id: secret::new_id().map_err(random_failed)?,
        reason: flags.reason,
        start: time("--start", flags.start)?,
        end: time("--end", flags.end)?,
        time_zone: flags.cron.as_ref().map(|_| flags.time_zone.unwrap_or_else(|| "UTC".into())),
        duration_secs: flags.duration.map(|d| d.as_secs()),
        cron: flags.cron,
        node_ids: flags.nodes.iter().map(|id| crate::model::node_key(id)).collect(),
        tags: flags.tags,
        created_by: "cli".into(),
        created_at: now,
    };
    maintenance::check_window(&record, now).map_err(Failure::Config)?;
    let store = open_existing_store(data_dir)?;
    known_nodes(&store, data_dir, &record.node_ids)?;
    let mut record = record;
    store
        .write(|txn| {
            // Stamped once the store is ours, so that it is visible within moments of its
            // stamp: open dashboards look for changes only that far back.
            record.created_at = self::now();
            txn.put_window(&record)?;
            txn.put_audit(cli_audit("maintenance_added", &record.id, describe_window(&record)))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    println!("{}", record.id);
    Ok(())
}

pub(super) fn maintenance_list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let windows = store.read(|txn| txn.windows()).map_err(|e| Failure::store(data_dir, e))?;
    let now = now();
    if json {
        let views: Vec<_> = windows.iter().map(|w| crate::api::WindowView::of(w, now)).collect();
        println!("{}", miniserde::json::to_string(&views));
        return Ok(());
    }
    for window in &windows {
        let active = maintenance::Window::parse(window).ok().and_then(|w| w.active_at(now));
        let state = active.map_or_else(String::new, |(_, end)| format!(" [in force until {}]", format_rfc3339(end)));
        println!("{}  {}{state}", window.id, describe_window(window));
    }
    Ok(())
}

/// `maintenance remove ID` and `silence remove ID`: what the hold held is released at once.
pub(super) fn remove(data_dir: &Path, id: &str, kind: HoldKind) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let removed = store
        .write(|txn| {
            let removed = match kind {
                HoldKind::Maintenance => txn.delete_window(id)?,
                HoldKind::Silenced => txn.delete_silence(id)?,
            };
            if removed {
                crate::alerts::holds_removed(txn, now())?;
                txn.put_audit(cli_audit(kind.removed_event(), id, String::new()))?;
            }
            Ok(removed)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    let command = match kind {
        HoldKind::Maintenance => "maintenance",
        HoldKind::Silenced => "silence",
    };
    let noun = kind.noun();
    if !removed {
        return Err(Failure::Failed(format!("no {noun} has the id {id}; see `hearth-collector {command} list`")));
    }
    println!("{noun} {id} removed");
    Ok(())
}

pub(super) fn silence_add(
    data_dir: &Path,
    node: Option<String>,
    tag: Option<String>,
    duration: Duration,
    reason: String,
) -> Result<(), Failure> {
    let now = now();
    let silence = SilenceRecord {
        id: secret::new_id().map_err(random_failed)?,
        node_id: node.map(|id| crate::model::node_key(&id)),
        tag,
        until: now.saturating_add(duration.as_millis().min(i64::MAX as u128 / 2) as i64),
        reason,
        created_by: "cli".into(),
        created_at: now,
    };
    maintenance::check_silence(&silence, now).map_err(Failure::Config)?;
    let store = open_existing_store(data_dir)?;
    known_nodes(&store, data_dir, &silence.node_id)?;
    let mut silence = silence;
    store
        .write(|txn| {
            // Stamped once the store is ours, as a maintenance window is.
            silence.created_at = self::now();
            txn.put_silence(&silence, now)?;
            txn.put_audit(cli_audit("silence_added", &silence.id, describe_silence(&silence)))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    println!("{}", silence.id);
    Ok(())
}

pub(super) fn silence_list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let now = now();
    let silences: Vec<SilenceRecord> = store
        .read(|txn| txn.silences())
        .map_err(|e| Failure::store(data_dir, e))?
        .into_iter()
        .filter(|s| s.until > now)
        .collect();
    if json {
        let views: Vec<_> = silences.iter().map(crate::api::SilenceView::of).collect();
        println!("{}", miniserde::json::to_string(&views));
        return Ok(());
    }
    for silence in &silences {
        println!("{}  {}", silence.id, describe_silence(silence));
    }
    Ok(())
}

pub(super) fn node_ack(data_dir: &Path, node_id: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let outcome = store
        .write(|txn| {
            let Some(mut node) = txn.node(node_id)? else { return Ok(None) };
            if node.down_since.is_none() {
                return Ok(Some(false));
            }
            // Stamped once the store is ours, as a maintenance window is.
            node.acked_at = Some(now());
            let previous = node.deadline;
            txn.save_node(&node, previous)?;
            txn.put_audit(cli_audit("node_acknowledged", node_id, format!("{} ({})", node.name, node.hostname)))?;
            Ok(Some(true))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    match outcome {
        None => Err(Failure::Failed(format!("no node has the id {node_id}; see `hearth-collector nodes`"))),
        Some(false) => Err(Failure::Failed(format!(
            "node {node_id} is not alerting (it was not declared offline); there is nothing to acknowledge"
        ))),
        Some(true) => {
            println!("node {node_id} acknowledged: no reminders until it recovers");
            Ok(())
        }
    }
}

/// That each node id a window or silence names is a node's (`maintenance::check_nodes`).
fn known_nodes<'a>(
    store: &crate::store::Store,
    data_dir: &Path,
    ids: impl IntoIterator<Item = &'a String>,
) -> Result<(), Failure> {
    let ids: Vec<&String> = ids.into_iter().collect();
    let checked = store
        .read(|txn| Ok(maintenance::check_nodes(ids.iter().copied(), |id| matches!(txn.node(id), Ok(Some(_))))))
        .map_err(|e| Failure::store(data_dir, e))?;
    checked.map_err(|reason| Failure::Failed(format!("{reason} (`hearth-collector nodes`)")))
}
