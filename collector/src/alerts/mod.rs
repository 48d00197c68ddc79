//! Alerts: what a change in a node's state becomes, and how it reaches people.
//!
//! A change is written as an event and, if it alerts, as an alert in the outbox, in the
//! same transaction as the state change that caused it. The worker (a thread of its own)
//! delivers outbox alerts to each channel, retrying with backoff, and marks them settled.
//! A crash between the two loses nothing: the outbox is on disk.

pub mod channel;
pub mod config;
pub mod worker;

use crate::jobs;
use crate::liveness::{self, Change, Policy, Watching};
use crate::maintenance::{self, Hold};
use crate::model::{
    AlertRecord, Delivery, DeliveryState, EventRecord, JobRecord, MaintenanceRecord, NodeRecord, SilenceRecord, Span,
};
use crate::store::{self, setting, RwTxn, Txn};
use crate::uptime;
use config::Channels;

/// Events older than this are dropped.
pub const EVENT_MAX_AGE_MS: i64 = 30 * 86_400_000;

/// How often the sweep writes down that the collector is alive: the error, at most, in how
/// long it knows it was away after a restart.
pub const ALIVE_EVERY_MS: i64 = 5_000;

/// The most alerts about one node that wait in the outbox: past it, the oldest is dropped
/// unsent, so that one node (a flapping check, with a channel down) cannot fill the outbox.
pub const PENDING_PER_NODE: usize = 20;

/// An absence longer than this is logged and told in the offline alerts that follow it.
pub const AWAY_NOTED_MS: i64 = 3 * ALIVE_EVERY_MS;

/// What `serve` does with the store before its first sweep: it remembers the policy it
/// runs with (for `hearth-collector nodes`), and starts watching now, with the time since
/// it was last alive as an absence that counts against no node
/// (`liveness::Watching::silence_from`). If it was away longer than [`AWAY_NOTED_MS`], it
/// says so, in the log and in the offline alerts that follow. Returns how long it was away,
/// in ms.
pub fn on_start(txn: &mut Txn<RwTxn>, now: i64, policy: &Policy) -> Result<Option<i64>, store::Error> {
    let alive_at: Option<i64> = txn.setting(setting::ALIVE_AT)?;
    let away = alive_at.map(|at| now - at).filter(|away| *away > AWAY_NOTED_MS);
    if let Some(away) = away {
        // An idle exit (socket activation) is an absence nobody needs warning of.
        let level = if txn.busy()? { log::Level::Warn } else { log::Level::Info };
        log::log!(
            level,
            "the collector was not running for about {} (last alive at {}): that time counts against no node",
            liveness::duration(away),
            hearth_wire::format_rfc3339(now - away)
        );
    }
    start_watching(txn, now, alive_at.filter(|at| *at < now))?;
    txn.put_setting(setting::POLICY, policy)?;
    Ok(away)
}

/// Starts watching afresh at `now`, after an absence from `away_from`, when the collector
/// was last known to run: before a restart (`on_start`), or while it ran, paused or
/// suspended or with its clock stepped forward (`http.rs` notices). The absence counts
/// against no node or job; one longer than [`AWAY_NOTED_MS`] is told in the alerts that
/// follow.
pub fn start_watching(txn: &mut Txn<RwTxn>, now: i64, away_from: Option<i64>) -> Result<(), store::Error> {
    let watching: Watching = txn.setting(setting::WATCHING)?.unwrap_or_default();
    let away = away_from.map(|from| liveness::Absence { from, to: now });
    let noted = away_from.is_some_and(|from| now - from > AWAY_NOTED_MS);
    txn.put_setting(setting::WATCHING, &watching.restarted(now, away, noted))?;
    txn.put_setting(setting::ALIVE_AT, &now)
}

/// What an event or alert is about: a node or a job.
pub struct Subject<'a> {
    /// A node id, or a job id (`job-…`).
    pub id: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub tags: Vec<String>,
    pub down_since: Option<i64>,
    /// "node" or "job", for the log.
    pub what: &'static str,
}

impl<'a> Subject<'a> {
    pub fn node(node: &'a NodeRecord) -> Subject<'a> {
        let (id, name, hostname) = (&node.node_id, &node.name, &node.hostname);
        Subject { id, name, hostname, tags: node.all_tags(), down_since: node.down_since, what: "node" }
    }

    pub fn job(job: &'a JobRecord) -> Subject<'a> {
        Subject {
            id: &job.id,
            name: &job.name,
            hostname: "",
            tags: job.tags.clone(),
            down_since: job.down_since,
            what: "job",
        }
    }
}

/// Whom the windows and silences in force at one moment cover ([`Holds::in_force`]).
#[derive(Default)]
pub struct InForce {
    all: bool,
    ids: std::collections::HashSet<String>,
    tags: std::collections::HashSet<String>,
}

impl InForce {
    /// Whether any covers a node by a tag, so that nodes must be read with their tags.
    pub fn by_tag(&self) -> bool {
        !self.tags.is_empty()
    }

    /// Whether one covers `node` (read with its tags if [`InForce::by_tag`]).
    pub fn covers(&self, node: &NodeRecord) -> bool {
        self.all
            || self.ids.contains(&node.node_id)
            || (self.by_tag() && node.all_tags().iter().any(|t| self.tags.contains(t)))
    }
}

/// What holds alerts back now: the maintenance windows (parsed) and silences in the store.
pub struct Holds {
    windows: Vec<(MaintenanceRecord, maintenance::Window)>,
    silences: Vec<SilenceRecord>,
}

impl Holds {
    pub fn load<T: store::ReadTxn>(txn: &Txn<T>) -> Result<Holds, store::Error> {
        let windows = txn
            .windows()?
            .into_iter()
            .filter_map(|record| match maintenance::Window::parse(&record) {
                Ok(window) => Some((record, window)),
                Err(e) => {
                    log::warn!("maintenance window {} is ignored: {e}", record.id);
                    None
                }
            })
            .collect();
        Ok(Holds { windows, silences: txn.silences()? })
    }

    /// What holds alerts about `node` at `now`, if anything.
    pub fn hold(&self, node: &NodeRecord, now: i64) -> Option<Hold> {
        maintenance::hold(node, now, &self.windows, &self.silences)
    }

    /// Whether a window or silence began, ended or was made in `(since, now]`: then what
    /// each node shows about its holds may have changed.
    pub fn changed_between(&self, since: i64, now: i64) -> bool {
        let inside = |t: i64| since < t && t <= now;
        self.windows.iter().any(|(record, window)| {
            inside(record.created_at)
                || window.occurrences(since, now.saturating_add(1)).iter().any(|(s, e)| inside(*s) || inside(*e))
        }) || self.silences.iter().any(|s| inside(s.created_at) || inside(s.until))
    }

    /// Whom the windows and silences in force at `now` cover, gathered once for asking of
    /// every node of a fleet (`/metrics`).
    pub fn in_force(&self, now: i64) -> InForce {
        let mut covered = InForce::default();
        for (_, window) in self.windows.iter().filter(|(_, window)| window.active_at(now).is_some()) {
            match &window.scope {
                maintenance::Scope::All => covered.all = true,
                maintenance::Scope::Nodes(ids) => covered.ids.extend(ids.iter().cloned()),
                maintenance::Scope::Tags(tags) => covered.tags.extend(tags.iter().cloned()),
            }
        }
        for silence in self.silences.iter().filter(|silence| silence.until > now) {
            covered.ids.extend(silence.node_id.iter().cloned());
            covered.tags.extend(silence.tag.iter().cloned());
        }
        covered
    }

    /// When maintenance windows covered `node` between `from` and `to`.
    pub fn covering(&self, node: &NodeRecord, from: i64, to: i64) -> Vec<(i64, i64)> {
        maintenance::covering(node, &self.windows, from, to)
    }
}

/// Writes `changes` of `node` as events, and those that alert as outbox alerts for every
/// channel that wants them. Returns how many alerts were written.
///
/// Alerts are held here, for every channel alike: while a maintenance window or a silence
/// holds the node (`maintenance::hold`), and reminders while it is acknowledged; the
/// event is still written, with why it was held. A hold sets `held_since`, and a deadline
/// at its end, so that the sweep calls this again then: a node whose offline alert was
/// held and that is still down alerts once; one that is back sends nothing (its recovery
/// is held like its offline was).
pub fn record(
    txn: &mut Txn<RwTxn>,
    node: &mut NodeRecord,
    changes: &[Change],
    now: i64,
    channels: &Channels,
) -> Result<usize, store::Error> {
    let alerting = changes.iter().any(|c| c.kind.alerts());
    if !alerting && node.held_since.is_none() {
        return write_changes(txn, node, changes, now, channels, |_| None);
    }
    let holds = Holds::load(txn)?;
    let hold = holds.hold(node, now);
    // Whether the offline alert of an outage that began at `down_since` was held.
    let held_since = node.held_since;
    let offline_held = |down_since: Option<i64>| held_since.zip(down_since).is_some_and(|(h, d)| d >= h);
    let mut changes = changes.to_vec();
    if hold.is_none() && held_since.is_some() {
        node.held_since = None;
        let declared = node.down_since.is_some() && node.last_seen.is_some();
        if declared && offline_held(node.down_since) && !changes.iter().any(|c| c.kind == liveness::Kind::Offline) {
            let since = node.down_since.unwrap_or(now);
            let detail = format!(
                "still offline when its maintenance window or silence ended; down for {}",
                liveness::duration(now - since)
            );
            changes.push(Change {
                kind: liveness::Kind::Offline,
                check: None,
                detail,
                down_since: node.down_since,
                checks: Vec::new(),
            });
        } else if node.down_since.is_none() {
            changes.extend(still_failing(txn, node, held_since.unwrap_or(now), &changes)?);
        }
    }
    let acked = node.acked_at.is_some();
    let told = match hold {
        Some(_) => failures_told(txn, node, &changes)?,
        None => Vec::new(),
    };
    let mut held_by_hold = false;
    let alerts = write_changes(txn, node, &changes, now, channels, |change| match change.kind {
        liveness::Kind::Test => None,
        liveness::Kind::Recovered => {
            offline_held(change.down_since).then(|| "its offline alert was held, so its recovery is too".to_owned())
        }
        _ if told.contains(&change.kind) => None,
        liveness::Kind::Reminder if acked => Some("acknowledged".to_owned()),
        _ => hold.as_ref().map(|h| {
            held_by_hold = true;
            format!("{}: {}", h.kind.as_str(), h.reason)
        }),
    })?;
    if let Some(hold) = hold.filter(|_| held_by_hold || node.held_since.is_some()) {
        node.held_since.get_or_insert(now);
        node.deadline = Some(node.deadline.map_or(hold.until, |d| d.min(hold.until)));
    }
    Ok(alerts)
}

/// The recoveries among `changes` whose failure went out (its alert was not held): they
/// go out too, whatever holds the node now, or a channel told of a check failing before a
/// window began would never hear that it passes again (Alertmanager would keep it firing).
fn failures_told(txn: &Txn<RwTxn>, node: &NodeRecord, changes: &[Change]) -> Result<Vec<liveness::Kind>, store::Error> {
    use liveness::Kind;
    let failure_of = |kind| match kind {
        Kind::CheckRecovered => Some(Kind::CheckFailed),
        Kind::FlappingStopped => Some(Kind::Flapping),
        _ => None,
    };
    if changes.iter().all(|c| failure_of(c.kind).is_none()) {
        return Ok(Vec::new());
    }
    let events = txn.events(Some(&node.node_id), i64::MIN, usize::MAX)?;
    let told = |change: &Change| {
        let failure = failure_of(change.kind)?;
        let same_check = |e: &&EventRecord| e.check.is_none() || change.check.is_none() || e.check == change.check;
        let last = events.iter().rev().filter(|e| e.kind == failure).find(same_check)?;
        last.held.is_none().then_some(change.kind)
    };
    Ok(changes.iter().filter_map(told).collect())
}

/// When a hold ends on a node that is up: one `check_failed` for the checks failing now,
/// if a check failure was held during it (and this heartbeat does not already say so).
fn still_failing(
    txn: &Txn<RwTxn>,
    node: &NodeRecord,
    held_since: i64,
    changes: &[Change],
) -> Result<Option<Change>, store::Error> {
    let failing: Vec<hearth_wire::Check> =
        node.heartbeat.iter().flat_map(|hb| hb.checks.iter().flatten()).filter(|c| !c.ok).cloned().collect();
    if failing.is_empty() || changes.iter().any(|c| c.kind == liveness::Kind::CheckFailed) {
        return Ok(None);
    }
    let held_failure = txn
        .events(Some(&node.node_id), held_since - 1, crate::store::EVENTS_PER_NODE)?
        .iter()
        .any(|e| e.kind == liveness::Kind::CheckFailed && e.held.is_some());
    if !held_failure {
        return Ok(None);
    }
    let names: Vec<&str> = failing.iter().map(|c| c.name.as_str()).collect();
    let detail = format!("still failing when its maintenance window or silence ended: {}", names.join(", "));
    let check = (failing.len() == 1).then(|| failing[0].name.clone());
    Ok(Some(Change { kind: liveness::Kind::CheckFailed, check, detail, down_since: None, checks: failing }))
}

fn write_changes(
    txn: &mut Txn<RwTxn>,
    node: &NodeRecord,
    changes: &[Change],
    now: i64,
    channels: &Channels,
    held: impl FnMut(&Change) -> Option<String>,
) -> Result<usize, store::Error> {
    record_about(txn, &Subject::node(node), changes, now, channels, held)
}

/// An operator (`by`) deletes `node` from the store with everything of it
/// (`Txn::delete_node`). If a channel was told of a problem of it still on (`told_of`):
/// one `deleted` alert, so that no channel (Alertmanager least of all) is left holding a
/// problem that nothing can end any more. Never held: a window or silence could not end
/// on a node that is gone, and what was told before it would stay told. Nothing told,
/// nothing to end: no alert.
pub fn delete_node(
    txn: &mut Txn<RwTxn>,
    node: &NodeRecord,
    by: &str,
    now: i64,
    channels: &Channels,
) -> Result<(), store::Error> {
    let told = told_of(txn, node)?;
    txn.delete_node(node)?;
    if !told {
        return Ok(());
    }
    let checks = node.heartbeat.as_ref().and_then(|hb| hb.checks.clone()).unwrap_or_default();
    let detail = format!("deleted by {by}; what was told of it is over");
    let change = Change { kind: liveness::Kind::Deleted, check: None, detail, down_since: node.down_since, checks };
    record_about(txn, &Subject::node(node), &[change], now, channels, |_| None)?;
    Ok(())
}

/// Whether a channel was told of a problem of `node` that is still on: its outage (unless
/// the offline alert was held by a window or silence), or a failing check or flapping
/// whose last alert was not held.
fn told_of(txn: &Txn<RwTxn>, node: &NodeRecord) -> Result<bool, store::Error> {
    if node.down_since.is_some() && !node.offline_alert_held() {
        return Ok(true);
    }
    use liveness::Kind;
    let failing: Vec<&str> = node
        .heartbeat
        .iter()
        .flat_map(|hb| hb.checks.iter().flatten())
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    if failing.is_empty() && node.flapping_since.is_none() {
        return Ok(false);
    }
    let events = txn.events(Some(&node.node_id), i64::MIN, usize::MAX)?;
    // Since the problem last ended: was any alert of it not held? A failure naming no
    // check is about every check failing then; an end naming none is not taken to end
    // this one, whose names it does not keep (at worst a `deleted` ends nothing).
    let told = |failed: Kind, ended: Kind, check: Option<&str>| {
        let named = |e: &&EventRecord| check.is_none() || e.check.as_deref() == check;
        events
            .iter()
            .rev()
            .filter(|e| (e.kind == failed && (e.check.is_none() || named(e))) || (e.kind == ended && named(e)))
            .take_while(|e| e.kind == failed)
            .any(|e| e.held.is_none())
    };
    let flapping_told = node.flapping_since.is_some() && told(Kind::Flapping, Kind::FlappingStopped, None);
    Ok(flapping_told || failing.into_iter().any(|check| told(Kind::CheckFailed, Kind::CheckRecovered, Some(check))))
}

/// [`record`] for any subject: a node or a job. `held` says why an alerting change is
/// held back (its event is still written), if it is.
pub fn record_about(
    txn: &mut Txn<RwTxn>,
    subject: &Subject,
    changes: &[Change],
    now: i64,
    channels: &Channels,
    mut held: impl FnMut(&Change) -> Option<String>,
) -> Result<usize, store::Error> {
    let mut alerts = 0;
    for change in changes {
        let kind = change.kind;
        let held = if kind.alerts() { held(change) } else { None };
        let event = EventRecord {
            id: txn.next_id()?,
            node_id: subject.id.to_owned(),
            at: now,
            kind,
            check: change.check.clone(),
            detail: change.detail.clone(),
            held: held.clone(),
        };
        txn.put_event(&event)?;
        match &held {
            Some(why) => log::info!(
                "{} {} ({}): {} (held, {why}): {}",
                subject.what,
                subject.name,
                subject.id,
                kind.as_str(),
                change.detail
            ),
            None => {
                log::info!("{} {} ({}): {}: {}", subject.what, subject.name, subject.id, kind.as_str(), change.detail)
            }
        }
        if !change.kind.alerts() || held.is_some() {
            continue;
        }
        let deliveries: Vec<Delivery> = channels
            .list
            .iter()
            .filter(|c| c.wants(kind, &subject.tags))
            .map(|c| Delivery {
                channel: c.name.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt: now,
                last_error: None,
                answered: None,
                delivered_at: None,
            })
            .collect();
        if deliveries.is_empty() {
            continue;
        }
        make_room(txn, subject)?;
        let alert = AlertRecord {
            id: txn.next_id()?,
            kind,
            node_id: subject.id.to_owned(),
            name: subject.name.to_owned(),
            hostname: subject.hostname.to_owned(),
            tags: subject.tags.clone(),
            check: change.check.clone(),
            checks: (!change.checks.is_empty()).then(|| change.checks.clone()),
            detail: change.detail.clone(),
            at: now,
            down_since: change.down_since.or(subject.down_since),
            deliveries,
        };
        txn.put_alert(&alert)?;
        alerts += 1;
    }
    Ok(alerts)
}

/// A window or silence was removed: every node whose alerts were held gets a deadline of
/// `now`, so that the sweep looks at it at once, and one still down whose offline alert
/// was held alerts then, rather than when the removed hold would have ended. Rare (an
/// operator's removal), so a walk over the nodes is affordable.
pub fn holds_removed(txn: &mut Txn<RwTxn>, now: i64) -> Result<usize, store::Error> {
    let mut held = Vec::new();
    txn.each_node_status(false, |n| {
        if n.held_since.is_some() {
            held.push(n.node_id);
        }
    })?;
    for id in &held {
        let Some(mut node) = txn.node(id)? else { continue };
        let previous = node.deadline;
        node.deadline = Some(now);
        txn.save_node(&node, previous)?;
    }
    Ok(held.len())
}

/// Writes a span that just ended into the node's uptime log, the part of an outage inside
/// a maintenance window marked as such.
pub fn record_span(txn: &mut Txn<RwTxn>, node: &NodeRecord, span: Span, now: i64) -> Result<(), store::Error> {
    let windows = Holds::load(txn)?.covering(node, span.start, span.end);
    for piece in uptime::split(span, &windows) {
        txn.put_span(&node.node_id, piece, now)?;
    }
    Ok(())
}

/// Drops the oldest alerts about `subject` still waiting, so that a new one keeps it within
/// [`PENDING_PER_NODE`]; each drop is counted and logged.
fn make_room(txn: &mut Txn<RwTxn>, subject: &Subject) -> Result<(), store::Error> {
    let waiting = txn.outbox_of(subject.id)?;
    let excess = (waiting.len() + 1).saturating_sub(PENDING_PER_NODE);
    for id in waiting.into_iter().take(excess) {
        let Some(mut alert) = txn.alert(id)? else { continue };
        for delivery in alert.deliveries.iter_mut().filter(|d| d.state == DeliveryState::Pending) {
            delivery.state = DeliveryState::Dropped;
            delivery.last_error = Some(format!(
                "dropped unsent: more than {PENDING_PER_NODE} alerts about this {} were waiting",
                subject.what
            ));
        }
        txn.put_alert(&alert)?;
        let dropped = txn.setting::<u64>(setting::ALERTS_DROPPED)?.unwrap_or(0) + 1;
        txn.put_setting(setting::ALERTS_DROPPED, &dropped)?;
        log::warn!(
            "{} {} ({}): dropped its oldest waiting alert {id} ({}): more than {PENDING_PER_NODE} were waiting; {dropped} dropped so far",
            subject.what,
            subject.name,
            subject.id,
            alert.kind.as_str()
        );
    }
    Ok(())
}

/// The most nodes and jobs one pass of the sweep looks at, and the longest it goes on
/// taking more. A pass runs on the thread that answers heartbeats, between their batches,
/// so it is kept short; when more are due (many deadlines at once: a fleet-wide outage, or
/// every node's fresh grace ending after a restart), passes follow each other with
/// batches in between.
pub const SWEEP_PASS: usize = 256;
pub const SWEEP_PASS_TIME: std::time::Duration = std::time::Duration::from_millis(4);

/// What one pass of the sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Alerts written.
    pub alerts: usize,
    /// Whether more may be due than this pass took: run another one soon.
    pub more: bool,
}

/// Looks at nodes and jobs whose deadline has passed, earliest first, up to
/// [`SWEEP_PASS`] of them or for about [`SWEEP_PASS_TIME`], and notes that the collector
/// is alive.
pub fn sweep(txn: &mut Txn<RwTxn>, now: i64, policy: &Policy, channels: &Channels) -> Result<Swept, store::Error> {
    let alive_at: Option<i64> = txn.setting(setting::ALIVE_AT)?;
    if alive_at.is_none_or(|at| now - at >= ALIVE_EVERY_MS || now < at) {
        txn.put_setting(setting::ALIVE_AT, &now)?;
    }
    let started = std::time::Instant::now();
    let (mut alerts, jobs, jobs_left) = sweep_jobs(txn, now, policy, channels, started)?;
    if jobs_left {
        return Ok(Swept { alerts, more: true });
    }
    let due = txn.due_nodes(now, SWEEP_PASS - jobs)?;
    let mut more = jobs + due.len() >= SWEEP_PASS;
    if due.is_empty() {
        return Ok(Swept { alerts, more });
    }
    let watching: Watching = txn.setting(setting::WATCHING)?.unwrap_or_default();
    for (i, (when, node_id)) in due.into_iter().enumerate() {
        if i > 0 && started.elapsed() >= SWEEP_PASS_TIME {
            more = true;
            break;
        }
        let node = txn.node(&node_id)?;
        let deadline = node.as_ref().and_then(|n| n.deadline);
        let Some(mut node) = node.filter(|_| deadline == Some(when)) else {
            txn.repair_deadline(when, &node_id, deadline)?;
            continue;
        };
        let previous = node.deadline;
        let changes = liveness::on_deadline(&mut node, now, policy, &watching);
        alerts += record(txn, &mut node, &changes, now, channels)?;
        txn.save_node(&node, previous)?;
    }
    Ok(Swept { alerts, more })
}

/// Looks at up to [`SWEEP_PASS`] jobs whose deadline has passed (`jobs::on_deadline`),
/// within the pass's time from `started`; as with nodes, no job is declared down for the
/// collector's own absence (its pings were refused then). Returns the alerts written, the
/// jobs looked at, and whether the time ran out before every due job was looked at.
fn sweep_jobs(
    txn: &mut Txn<RwTxn>,
    now: i64,
    policy: &Policy,
    channels: &Channels,
    started: std::time::Instant,
) -> Result<(usize, usize, bool), store::Error> {
    let mut alerts = 0;
    let due = txn.due_jobs(now, SWEEP_PASS)?;
    if due.is_empty() {
        return Ok((0, 0, false));
    }
    let watching: Watching = txn.setting(setting::WATCHING)?.unwrap_or_default();
    let mut looked = 0;
    for (when, job_id) in due {
        if looked > 0 && started.elapsed() >= SWEEP_PASS_TIME {
            return Ok((alerts, looked, true));
        }
        looked += 1;
        let job = txn.job(&job_id)?;
        let deadline = job.as_ref().and_then(|j| j.deadline);
        let Some(mut job) = job.filter(|_| deadline == Some(when)) else {
            txn.repair_job_deadline(when, &job_id, deadline)?;
            continue;
        };
        let previous = job.deadline;
        let changes = jobs::on_deadline(&mut job, now, policy.remind_ms(), watching.since);
        alerts += record_about(txn, &Subject::job(&job), &changes, now, channels, |_| None)?;
        txn.save_job(&job, previous, Some(&job.slug.clone()))?;
    }
    Ok((alerts, looked, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};
    use hearth_wire::Heartbeat;

    const S: i64 = 1000;

    fn webhook() -> Channels {
        config::parse("[channel hook]\ntype = webhook\nurl = http://127.0.0.1:9/hook\n").unwrap()
    }

    fn beat() -> Heartbeat {
        Heartbeat {
            node_id: "n1".into(),
            name: Some("garage-pi".into()),
            interval_secs: Some(10),
            services_ok: true,
            ..Default::default()
        }
    }

    /// A heartbeat at `at`, as the API takes it in.
    fn heartbeat(store: &Store, at: i64, channels: &Channels) {
        store
            .write(|txn| {
                let mut node = txn.node("n1")?.unwrap_or(NodeRecord { node_id: "n1".into(), ..Default::default() });
                let previous = node.deadline;
                let changes = liveness::on_heartbeat(&mut node, beat(), at, &Policy::default());
                record(txn, &mut node, &changes, at, channels)?;
                txn.save_node(&node, previous)
            })
            .unwrap();
    }

    fn alert_kinds(store: &Store) -> Vec<(liveness::Kind, i64, Option<i64>, String)> {
        let mut alerts = store.read(|txn| txn.alerts(100)).unwrap();
        alerts.reverse();
        alerts.into_iter().map(|a| (a.kind, a.at, a.down_since, a.detail)).collect()
    }

    /// What deleting a node ends is what was told of it: per check, since it last passed.
    #[test]
    fn a_deleted_node_was_told_of_a_check_if_any_alert_of_its_failure_went_out() {
        use liveness::Kind::{CheckFailed, CheckRecovered};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let failing = |names: &[&str]| NodeRecord {
            node_id: "n1".into(),
            heartbeat: Some(Heartbeat {
                checks: Some(
                    names
                        .iter()
                        .map(|n| hearth_wire::Check { name: (*n).into(), ok: false, detail: String::new() })
                        .collect(),
                ),
                ..beat()
            }),
            ..Default::default()
        };
        // (what, events: kind, check, held; checks failing now, told)
        type Events<'a> = &'a [(liveness::Kind, Option<&'a str>, bool)];
        let cases: [(&str, Events, &[&str], bool); 6] = [
            (
                "A told, then B held",
                &[(CheckFailed, Some("A"), false), (CheckFailed, Some("B"), true)],
                &["A", "B"],
                true,
            ),
            ("only B, held", &[(CheckFailed, Some("A"), false), (CheckFailed, Some("B"), true)], &["B"], false),
            (
                "A told once, passed, failing again held",
                &[(CheckFailed, Some("A"), false), (CheckRecovered, Some("A"), false), (CheckFailed, Some("A"), true)],
                &["A"],
                false,
            ),
            ("both in one event, told", &[(CheckFailed, None, false)], &["A", "B"], true),
            (
                "A told; B and C failed and passed together",
                &[(CheckFailed, Some("A"), false), (CheckFailed, None, true), (CheckRecovered, None, false)],
                &["A"],
                true,
            ),
            ("nothing failing", &[(CheckFailed, Some("A"), false)], &[], false),
        ];
        for (i, (what, events, now_failing, expected)) in cases.into_iter().enumerate() {
            let told = store
                .write(|txn| {
                    let node = NodeRecord { node_id: format!("n{i}"), ..failing(now_failing) };
                    for (kind, check, held) in events {
                        let id = txn.next_id()?;
                        let (check, detail) = (check.map(str::to_owned), String::new());
                        let held = held.then(|| "silenced: x".to_owned());
                        txn.put_event(&EventRecord {
                            id,
                            node_id: node.node_id.clone(),
                            at: id as i64,
                            kind: *kind,
                            check,
                            detail,
                            held,
                        })?;
                    }
                    told_of(txn, &node)
                })
                .unwrap();
            assert_eq!(told, expected, "{what}");
        }
    }

    #[test]
    fn a_restart_counts_none_of_its_absence_against_a_node_and_the_offline_alert_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy { grace_secs: Some(40), ..Policy::default() }, webhook());
        store.write(|txn| on_start(txn, 0, &policy)).unwrap();
        heartbeat(&store, 0, &channels);
        for t in 1..=7 {
            assert_eq!(store.write(|txn| sweep(txn, t * S, &policy, &channels)).unwrap().alerts, 0);
        }
        // The collector stops after its sweep at 7 s (it last said it was alive at 5 s) and
        // starts again at 600 s, long after the node's deadline.
        let away = store.write(|txn| on_start(txn, 600 * S, &policy)).unwrap();
        assert_eq!(away, Some(595 * S));
        // The node was watched silent for 5 s before: 45 s more of grace and minimum down time.
        for t in 600..645 {
            assert_eq!(store.write(|txn| sweep(txn, t * S, &policy, &channels)).unwrap().alerts, 0, "paged at {t} s");
        }
        assert_eq!(store.write(|txn| sweep(txn, 645 * S, &policy, &channels)).unwrap().alerts, 1);
        let alerts = alert_kinds(&store);
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].3.contains("no heartbeat for 645 s; the collector itself was not running for 595 s of that"),
            "{alerts:?}"
        );
        let kept = store.read(|txn| txn.setting::<Policy>(setting::POLICY)).unwrap();
        assert_eq!(kept, Some(policy), "the policy `nodes` reads");
    }

    /// A collector that stops and starts again and again (a crash loop, each run shorter
    /// than a grace) still declares a dead node offline, once it has watched it stay silent
    /// for its grace and minimum down time, and only once.
    #[test]
    fn a_crash_looping_collector_still_declares_a_silent_node_offline_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy { grace_secs: Some(40), ..Policy::default() }, webhook());
        store.write(|txn| on_start(txn, 0, &policy)).unwrap();
        heartbeat(&store, 0, &channels);
        let (mut t, mut paged) = (0, Vec::new());
        for _ in 0..10 {
            // 20 s of sweeps (the last says it is alive at its end), then 10 s away.
            for _ in 0..20 {
                t += 1;
                if store.write(|txn| sweep(txn, t * S, &policy, &channels)).unwrap().alerts > 0 {
                    paged.push(t);
                }
            }
            t += 10;
            store.write(|txn| on_start(txn, t * S, &policy)).unwrap();
        }
        // Watched for 0–20, 30–50 and 60–70 s: 50 s of silence at 70 s.
        assert_eq!(paged, [70], "paged at these times");
        let alerts = alert_kinds(&store);
        assert!(alerts[0].3.contains("the collector itself was not running for 20 s of that"), "{alerts:?}");
    }

    /// A fleet-wide outage is swept a few nodes at a time, each pass short, until every
    /// node is paged once; an index entry that is not its node's deadline is dropped
    /// instead of blocking the passes behind it.
    #[test]
    fn a_mass_outage_is_swept_in_short_passes_and_stale_entries_do_not_block_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        let (policy, channels) = (Policy { grace_secs: Some(40), ..Policy::default() }, webhook());
        let count = 3 * SWEEP_PASS + 5;
        store
            .write(|txn| {
                for i in 0..count {
                    let id = format!("node-{i:03}");
                    let mut node = NodeRecord { node_id: id.clone(), ..Default::default() };
                    let previous = node.deadline;
                    liveness::on_heartbeat(&mut node, Heartbeat { node_id: id, ..beat() }, 0, &policy);
                    // An entry left behind by a bug, long due and not the node's deadline,
                    // must not stay due forever: saved first, it is not moved (the
                    // deadline before it is given as none), so it stays in the index.
                    txn.save_node(&NodeRecord { deadline: Some(2 + i as i64), ..node.clone() }, None)?;
                    txn.save_node(&node, previous)?;
                }
                Ok(())
            })
            .unwrap();
        let mut passes = Vec::new();
        loop {
            let swept = store.write(|txn| sweep(txn, 100 * S, &policy, &channels)).unwrap();
            passes.push(swept.alerts);
            assert!(passes.len() < 2_000, "the sweep never finished: {passes:?}");
            if !swept.more {
                break;
            }
        }
        assert!(passes.iter().all(|&alerts| alerts <= SWEEP_PASS), "{passes:?}");
        assert_eq!(passes.iter().sum::<usize>(), count, "one page per node: {passes:?}");
        assert_eq!(store.read(|txn| txn.due_nodes(i64::MAX, usize::MAX)).unwrap().len(), 0, "every entry was settled");
        assert_eq!(
            store.write(|txn| sweep(txn, 101 * S, &policy, &channels)).unwrap(),
            Swept { alerts: 0, more: false }
        );
    }

    /// A node with a channel down cannot fill the outbox: its oldest waiting alerts are
    /// dropped, counted, and other nodes' alerts are untouched.
    #[test]
    fn one_node_keeps_at_most_its_share_of_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let channels = webhook();
        let node = |id: &str| NodeRecord { node_id: id.into(), name: id.into(), ..Default::default() };
        let flip = |i: usize| Change {
            kind: if i % 2 == 0 { liveness::Kind::CheckFailed } else { liveness::Kind::CheckRecovered },
            check: Some("disk".into()),
            detail: format!("flip {i}"),
            down_since: None,
            checks: Vec::new(),
        };
        let offline = Change {
            kind: liveness::Kind::Offline,
            check: None,
            detail: "quiet".into(),
            down_since: None,
            checks: Vec::new(),
        };
        store.write(|txn| record(txn, &mut node("calm"), std::slice::from_ref(&offline), 0, &channels)).unwrap();
        for i in 0..100 {
            store.write(|txn| record(txn, &mut node("noisy"), &[flip(i)], i as i64, &channels)).unwrap();
        }
        let (noisy, calm, dropped) = store
            .read(|txn| {
                Ok((txn.outbox_of("noisy")?, txn.outbox_of("calm")?, txn.setting::<u64>(setting::ALERTS_DROPPED)?))
            })
            .unwrap();
        assert_eq!(noisy.len(), PENDING_PER_NODE);
        assert_eq!(calm.len(), 1, "another node's alert was dropped");
        assert_eq!(dropped, Some(100 - PENDING_PER_NODE as u64));
        let newest = store.read(|txn| txn.alert(*noisy.last().unwrap())).unwrap().unwrap();
        assert_eq!(newest.detail, "flip 99", "the newest alerts are the ones kept");
        let oldest = store.read(|txn| txn.alerts(200)).unwrap().into_iter().find(|a| a.detail == "flip 0").unwrap();
        assert_eq!(oldest.deliveries[0].state, DeliveryState::Dropped);
        assert!(oldest.deliveries[0].last_error.as_deref().is_some_and(|e| e.contains("dropped unsent")));
    }

    #[test]
    fn a_recovered_alert_carries_when_the_node_went_down() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy::default(), webhook());
        heartbeat(&store, 0, &channels);
        store.write(|txn| sweep(txn, 40 * S, &policy, &channels)).unwrap();
        heartbeat(&store, 55 * S, &channels);
        let alerts = alert_kinds(&store);
        assert_eq!(alerts[0].0, liveness::Kind::Offline);
        assert_eq!(alerts[1].0, liveness::Kind::Recovered);
        assert_eq!((alerts[1].1, alerts[1].2), (55 * S, Some(40 * S)), "{alerts:?}");
        let recovered = store.read(|txn| txn.alerts(1)).unwrap().remove(0);
        assert_eq!(
            channel::summary(&recovered),
            "garage-pi is back online: heard from again after 15 s offline (55 s without a heartbeat)"
        );
    }

    /// Sweeps every second from `from` to `to` (seconds); returns the alerts written.
    fn sweep_through(store: &Store, from: i64, to: i64, policy: &Policy, channels: &Channels) -> usize {
        (from..=to).map(|t| store.write(|txn| sweep(txn, t * S, policy, channels)).unwrap().alerts).sum()
    }

    fn window(start: i64, end: i64) -> MaintenanceRecord {
        MaintenanceRecord {
            id: "w".into(),
            reason: "rewiring".into(),
            start: Some(start),
            end: Some(end),
            ..Default::default()
        }
    }

    /// Down and back inside a window: events marked, no alert at all, then or when it ends.
    /// Down inside it and still down when it ends: one offline alert, then. The uptime log
    /// holds the outage as maintenance, not held against the node.
    #[test]
    fn maintenance_holds_alerts_and_a_node_still_down_at_its_end_alerts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy::default(), webhook());
        store.write(|txn| txn.put_window(&window(100 * S, 300 * S))).unwrap();
        heartbeat(&store, 90 * S, &channels);
        assert_eq!(sweep_through(&store, 91, 200, &policy, &channels), 0, "offline at 140 s, in maintenance");
        let closed = store.read(|txn| Ok(uptime::ongoing(&txn.node("n1")?.unwrap(), 200 * S))).unwrap().unwrap();
        store
            .write(|txn| {
                let mut node = txn.node("n1")?.unwrap();
                let previous = node.deadline;
                let changes = liveness::on_heartbeat(&mut node, beat(), 200 * S, &policy);
                record_span(txn, &node, closed, 200 * S)?;
                record(txn, &mut node, &changes, 200 * S, &channels)?;
                txn.save_node(&node, previous)
            })
            .unwrap();
        for t in 201..=400 {
            if t % 10 == 0 {
                heartbeat(&store, t * S, &channels);
            }
            assert_eq!(sweep_through(&store, t, t, &policy, &channels), 0, "back before the end: nothing, ever");
        }
        assert!(alert_kinds(&store).is_empty());
        let events = store.read(|txn| txn.events(Some("n1"), 0, 100)).unwrap();
        let held: Vec<_> = events.iter().map(|e| (e.kind, e.held.clone())).collect();
        assert_eq!(
            held,
            [
                (liveness::Kind::Offline, Some("maintenance: rewiring".into())),
                (liveness::Kind::Recovered, Some("its offline alert was held, so its recovery is too".into()))
            ]
        );
        let spans = store.read(|txn| txn.spans("n1")).unwrap();
        assert_eq!(spans, [Span { start: 100 * S, end: 200 * S, cause: crate::model::SpanCause::Maintenance }]);

        // A second window; down inside it, and still down when it ends.
        store.write(|txn| txn.put_window(&MaintenanceRecord { id: "w2".into(), ..window(430 * S, 700 * S) })).unwrap();
        assert_eq!(sweep_through(&store, 401, 699, &policy, &channels), 0);
        assert_eq!(sweep_through(&store, 700, 700, &policy, &channels), 1, "the window ended with the node down");
        assert_eq!(sweep_through(&store, 701, 900, &policy, &channels), 0, "once");
        let alerts = alert_kinds(&store);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].0, alerts[0].2), (liveness::Kind::Offline, Some(440 * S)));
        assert!(alerts[0].3.contains("still offline when its maintenance window"), "{alerts:?}");
        heartbeat(&store, 950 * S, &channels);
        assert_eq!(alert_kinds(&store)[1].0, liveness::Kind::Recovered, "its recovery is told, as its offline was");
    }

    /// A silenced tag holds alerts like a window; an acknowledged node gets no reminders,
    /// and its recovery clears the acknowledgement.
    #[test]
    fn silences_hold_alerts_and_acknowledgements_hold_reminders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy { remind_every_secs: Some(100), ..Policy::default() }, webhook());
        heartbeat(&store, 0, &channels);
        let silence = SilenceRecord {
            id: "s".into(),
            node_id: Some("n1".into()),
            until: 30 * S,
            reason: "known".into(),
            ..Default::default()
        };
        store.write(|txn| txn.put_silence(&silence, 0)).unwrap();
        assert_eq!(sweep_through(&store, 1, 29, &policy, &channels), 0);
        store.write(|txn| txn.delete_silence("s")).unwrap();
        assert_eq!(sweep_through(&store, 30, 40, &policy, &channels), 1, "offline, once the silence is gone");
        store
            .write(|txn| {
                let mut node = txn.node("n1")?.unwrap();
                node.acked_at = Some(41 * S);
                txn.put_node(&node)
            })
            .unwrap();
        assert_eq!(sweep_through(&store, 41, 400, &policy, &channels), 0, "acknowledged: no reminders");
        let reminders = store.read(|txn| txn.events(Some("n1"), 0, 100)).unwrap();
        assert!(reminders
            .iter()
            .any(|e| e.kind == liveness::Kind::Reminder && e.held.as_deref() == Some("acknowledged")));
        heartbeat(&store, 401 * S, &channels);
        assert_eq!(store.read(|txn| txn.node("n1")).unwrap().unwrap().acked_at, None, "recovery clears it");
        assert_eq!(alert_kinds(&store).last().unwrap().0, liveness::Kind::Recovered);
    }

    /// A window removed before its end ends the hold then: the node still down alerts at
    /// the next sweep, not when the window would have ended.
    #[test]
    fn removing_a_window_releases_what_it_held_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy::default(), webhook());
        store.write(|txn| txn.put_window(&window(0, 10_000 * S))).unwrap();
        heartbeat(&store, 10 * S, &channels);
        assert_eq!(sweep_through(&store, 11, 100, &policy, &channels), 0, "held");
        store.write(|txn| Ok(txn.delete_window("w")? && holds_removed(txn, 101 * S)? == 1)).unwrap();
        assert_eq!(sweep_through(&store, 101, 101, &policy, &channels), 1, "released at once");
        assert_eq!(alert_kinds(&store)[0].0, liveness::Kind::Offline);
    }

    /// A refresh must hear of a window or silence that began, ended or was made since.
    #[test]
    fn holds_say_when_they_changed() {
        let once = window(100 * S, 200 * S);
        let parsed = maintenance::Window::parse(&once).unwrap();
        let silence = SilenceRecord {
            id: "s".into(),
            tag: Some("t".into()),
            until: 500 * S,
            created_at: 300 * S,
            ..Default::default()
        };
        let holds = Holds { windows: vec![(once, parsed)], silences: vec![silence] };
        let cases = [
            (10, 99, false),
            (99, 100, true), // it began
            (120, 180, false),
            (180, 200, true), // it ended
            (250, 299, false),
            (299, 300, true), // the silence was made
            (400, 499, false),
            (499, 500, true), // the silence ended
        ];
        for (since, now, expected) in cases {
            assert_eq!(holds.changed_between(since * S, now * S), expected, "({since}, {now}]");
        }
    }

    /// Sends node `n1`'s heartbeat at `at`, with its `disk` check passing or not.
    fn disk_check(store: &Store, at: i64, ok: bool, policy: &Policy, channels: &Channels) {
        store
            .write(|txn| {
                let mut node = txn.node("n1")?.unwrap_or(NodeRecord { node_id: "n1".into(), ..Default::default() });
                let previous = node.deadline;
                let check = hearth_wire::Check { name: "disk".into(), ok, detail: "91 % used".into() };
                let hb = Heartbeat { checks: Some(vec![check]), ..beat() };
                let changes = liveness::on_heartbeat(&mut node, hb, at, policy);
                record(txn, &mut node, &changes, at, channels)?;
                txn.save_node(&node, previous)
            })
            .unwrap();
    }

    #[test]
    fn a_failure_told_before_a_window_has_its_recovery_told_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy::default(), webhook());
        store.write(|txn| txn.put_window(&window(50 * S, 150 * S))).unwrap();
        for t in (0..200).step_by(10) {
            // Failing from 20 s (told), passing again from 80 s, inside the window;
            // failing again from 100 s and passing from 120 s, both inside it (held).
            disk_check(&store, t * S, !(20..80).contains(&t) && !(100..120).contains(&t), &policy, &channels);
            sweep_through(&store, t, t + 9, &policy, &channels);
        }
        let kinds: Vec<(liveness::Kind, i64)> = alert_kinds(&store).iter().map(|a| (a.0, a.1 / S)).collect();
        assert_eq!(kinds, [(liveness::Kind::CheckFailed, 20), (liveness::Kind::CheckRecovered, 80)]);
    }

    /// A check that began failing inside a window and still fails when it ends is told
    /// once then; one that passed again inside it is never told.
    #[test]
    fn a_check_still_failing_when_the_window_ends_alerts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap();
        let (policy, channels) = (Policy::default(), webhook());
        store.write(|txn| txn.put_window(&window(0, 100 * S))).unwrap();
        let send = |at: i64, ok: bool| disk_check(&store, at, ok, &policy, &channels);
        for t in (0..100).step_by(10) {
            send(t * S, t < 20); // the check fails from 20 s on
            sweep_through(&store, t, t + 9, &policy, &channels);
        }
        assert!(alert_kinds(&store).is_empty(), "held inside the window");
        assert_eq!(sweep_through(&store, 100, 100, &policy, &channels), 1, "the window ended with it failing");
        send(100 * S, false);
        let alerts = alert_kinds(&store);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, liveness::Kind::CheckFailed);
        assert!(alerts[0].3.contains("still failing when its maintenance window"), "{alerts:?}");
    }
}
