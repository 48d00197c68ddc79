//! Holding alerts back, for operators: maintenance windows, silences and acknowledgements
//! (`maintenance.rs` has the rules, `alerts::record` applies them).

use super::fleet::{no_such_node, parse_known_body};
use super::{audit, internal, ApiError, Context, Handled, Reply, Request, User};
use crate::maintenance::{self, HoldKind};
use crate::model::{node_key, MaintenanceRecord, SilenceRecord};
use crate::secret;
use crate::store::{ReadTxn, RwTxn, Txn};
use hearth_wire::{format_rfc3339, parse_rfc3339};
use miniserde::{Deserialize, Serialize};

/// `POST /api/maintenance`.
#[derive(Deserialize, Debug, Default)]
struct WindowRequest {
    reason: Option<String>,
    start: Option<String>,
    end: Option<String>,
    cron: Option<String>,
    duration_secs: Option<u64>,
    time_zone: Option<String>,
    /// What jobs call `time_zone`.
    tz: Option<String>,
    node_ids: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(crate) struct WindowView {
    id: String,
    reason: String,
    start: Option<String>,
    end: Option<String>,
    cron: Option<String>,
    duration_secs: Option<u64>,
    time_zone: Option<String>,
    node_ids: Vec<String>,
    tags: Vec<String>,
    created_by: String,
    created_at: String,
    /// Whether it holds now.
    active: bool,
    /// When it next begins, if it does.
    next_start: Option<String>,
}

impl WindowView {
    pub(crate) fn of(record: &MaintenanceRecord, now: i64) -> WindowView {
        let window = maintenance::Window::parse(record).ok();
        WindowView {
            id: record.id.clone(),
            reason: record.reason.clone(),
            start: record.start.map(format_rfc3339),
            end: record.end.map(format_rfc3339),
            cron: record.cron.clone(),
            duration_secs: record.duration_secs,
            time_zone: record.time_zone.clone(),
            node_ids: record.node_ids.clone(),
            tags: record.tags.clone(),
            created_by: record.created_by.clone(),
            created_at: format_rfc3339(record.created_at),
            active: window.as_ref().is_some_and(|w| w.active_at(now).is_some()),
            next_start: window.and_then(|w| w.next_start(now)).map(format_rfc3339),
        }
    }
}

#[derive(Serialize)]
struct WindowList {
    windows: Vec<WindowView>,
}

pub(super) fn windows<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let windows = txn.windows()?.iter().map(|w| WindowView::of(w, ctx.now_ms)).collect();
    Ok(Reply::json(200, &WindowList { windows }))
}

fn time(field: &str, text: Option<String>) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        parse_rfc3339(&t).ok_or_else(|| {
            ApiError::invalid(format!("{field} must be an RFC 3339 time like 2026-12-01T02:00:00Z, not {t:?}"))
        })
    })
    .transpose()
}

pub(super) fn add_window(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let asked: WindowRequest = parse_known_body(
        req,
        r#"{"reason": "…", "start": "RFC 3339", "end": "RFC 3339"} or {"reason": "…", "cron": "0 2 * * 0", "duration_secs": 7200, "time_zone": "Europe/Berlin", "tags": ["…"]}"#,
        &["reason", "start", "end", "cron", "duration_secs", "time_zone", "tz", "node_ids", "tags"],
    )?;
    let record = MaintenanceRecord {
        id: secret::new_id().map_err(internal)?,
        reason: asked.reason.unwrap_or_default(),
        start: time("start", asked.start)?,
        end: time("end", asked.end)?,
        cron: asked.cron,
        duration_secs: asked.duration_secs,
        time_zone: match (asked.time_zone, asked.tz) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::invalid(format!("time_zone `{a}` and tz `{b}` differ: give one")).into())
            }
            (a, b) => a.or(b),
        },
        node_ids: asked.node_ids.unwrap_or_default().iter().map(|id| node_key(id)).collect(),
        tags: asked.tags.unwrap_or_default(),
        created_by: user.name.clone(),
        created_at: ctx.now_ms,
    };
    maintenance::check_window(&record, ctx.now_ms).map_err(ApiError::invalid)?;
    maintenance::check_nodes(&record.node_ids, |id| matches!(txn.node(id), Ok(Some(_)))).map_err(ApiError::invalid)?;
    txn.put_window(&record)?;
    audit(txn, ctx, req, &user.name, "maintenance_added", Some(&record.id), maintenance::describe_window(&record))?;
    log::info!("{} added maintenance window {}: {}", user.name, record.id, record.reason);
    Ok(Reply::json(201, &WindowView::of(&record, ctx.now_ms)))
}

/// `DELETE /api/maintenance/{id}` and `DELETE /api/silences/{id}`: what the hold held is released at once.
pub(super) fn remove(
    kind: HoldKind,
    user: &User,
    id: &str,
    req: &Request,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Handled {
    let removed = match kind {
        HoldKind::Maintenance => txn.delete_window(id)?,
        HoldKind::Silenced => txn.delete_silence(id)?,
    };
    if !removed {
        return Err(ApiError::not_found(format!("no {} has the id {id}", kind.noun())).into());
    }
    crate::alerts::holds_removed(txn, ctx.now_ms)?;
    audit(txn, ctx, req, &user.name, kind.removed_event(), Some(id), String::new())?;
    Ok(Reply::json(200, &Deleted { deleted: id.to_owned() }))
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

/// `POST /api/silences`.
#[derive(Deserialize, Debug, Default)]
struct SilenceRequest {
    node_id: Option<String>,
    tag: Option<String>,
    duration_secs: Option<u64>,
    reason: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SilenceView {
    id: String,
    node_id: Option<String>,
    tag: Option<String>,
    until: String,
    reason: String,
    created_by: String,
    created_at: String,
}

impl SilenceView {
    pub(crate) fn of(s: &SilenceRecord) -> SilenceView {
        SilenceView {
            id: s.id.clone(),
            node_id: s.node_id.clone(),
            tag: s.tag.clone(),
            until: format_rfc3339(s.until),
            reason: s.reason.clone(),
            created_by: s.created_by.clone(),
            created_at: format_rfc3339(s.created_at),
        }
    }
}

#[derive(Serialize)]
struct SilenceList {
    silences: Vec<SilenceView>,
}

/// `GET /api/silences`: those still in force.
pub(super) fn silences<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let silences = txn.silences()?.iter().filter(|s| s.until > ctx.now_ms).map(SilenceView::of).collect();
    Ok(Reply::json(200, &SilenceList { silences }))
}

pub(super) fn add_silence(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let asked: SilenceRequest = parse_known_body(
        req,
        r#"{"node_id": "…" or "tag": "…", "duration_secs": 3600, "reason": "…"}"#,
        &["node_id", "tag", "duration_secs", "reason"],
    )?;
    let secs = asked.duration_secs.unwrap_or(0).min(maintenance::MAX_SPAN_MS as u64 / 1000 + 1);
    let silence = SilenceRecord {
        id: secret::new_id().map_err(internal)?,
        node_id: asked.node_id.map(|id| node_key(&id)),
        tag: asked.tag,
        until: ctx.now_ms + secs as i64 * 1000,
        reason: asked.reason.unwrap_or_default(),
        created_by: user.name.clone(),
        created_at: ctx.now_ms,
    };
    maintenance::check_silence(&silence, ctx.now_ms).map_err(ApiError::invalid)?;
    maintenance::check_nodes(&silence.node_id, |id| matches!(txn.node(id), Ok(Some(_)))).map_err(ApiError::invalid)?;
    txn.put_silence(&silence, ctx.now_ms)?;
    audit(txn, ctx, req, &user.name, "silence_added", Some(&silence.id), maintenance::describe_silence(&silence))?;
    log::info!("{} added silence {}: {}", user.name, silence.id, silence.reason);
    Ok(Reply::json(201, &SilenceView::of(&silence)))
}

#[derive(Serialize)]
struct Acked {
    node_id: String,
    acked_at: String,
}

/// `POST /api/nodes/{id}/ack`: no reminders about this node until it recovers.
pub(super) fn acknowledge(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let id = node_key(id);
    let Some(mut node) = txn.node(&id)? else { return Err(no_such_node(&id).into()) };
    if node.down_since.is_none() {
        let message =
            format!("node {id} is not alerting (it was not declared offline); there is nothing to acknowledge");
        return Err(ApiError::new(409, "not_alerting", message).into());
    }
    node.acked_at = Some(ctx.now_ms);
    let previous = node.deadline;
    txn.save_node(&node, previous)?;
    audit(txn, ctx, req, &user.name, "node_acknowledged", Some(&id), format!("{} ({})", node.name, node.hostname))?;
    log::info!("{} acknowledged node {id}", user.name);
    Ok(Reply::json(200, &Acked { node_id: id, acked_at: format_rfc3339(ctx.now_ms) }))
}
