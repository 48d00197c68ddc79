//! When a node counts as down, and what a heartbeat says has changed.
//! Pure: every function is handed the time, so tests never wait through a grace period.

pub use crate::model::EventKind as Kind;
use crate::model::NodeRecord;
use hearth_wire::{Check, Heartbeat};

/// How long silence is tolerated, and how often a down node is reminded about.
/// `serve` keeps the one it runs with in the store, so that `nodes` judges alike.
#[derive(Debug, Clone, Default, PartialEq, miniserde::Serialize, miniserde::Deserialize)]
pub struct Policy {
    /// Overrides 3 × the node's interval for every node without its own grace.
    pub grace_secs: Option<u64>,
    /// How long past grace a node must stay silent before it is declared offline;
    /// `None` means one interval.
    pub min_down_secs: Option<u64>,
    /// How often to remind while a node stays down; `None` turns reminders off.
    pub remind_every_secs: Option<u64>,
    /// Alert once about a node enrolled this long ago and never heard from; `None`: never.
    pub pending_alert_secs: Option<u64>,
}

/// Clock skew past this many seconds is worth an event.
pub const SKEW_LIMIT_SECS: i64 = 60;

/// Grace is never shorter than this many intervals: with less, a healthy node would be
/// declared offline between two of its heartbeats, and recover with the next.
pub const MIN_GRACE_INTERVALS: u64 = 2;

impl Policy {
    /// The node's own grace, else the global one, else 3 × its interval; never less than
    /// [`MIN_GRACE_INTERVALS`] × its interval.
    pub fn grace_ms(&self, node: &NodeRecord) -> u64 {
        let interval = node.interval_secs();
        let grace = node.grace_secs.or(self.grace_secs).unwrap_or(3 * interval);
        grace.max(MIN_GRACE_INTERVALS * interval).saturating_mul(1000)
    }

    /// How long `node` may be silent before its status reads offline, for a collector
    /// watching since `watching_since`: its grace, counted from that start at the earliest,
    /// as its offline alert is. The collector's own absence is nobody's silence: a node it
    /// has not heard from since before it started is `late` meanwhile, not `offline`;
    /// unless it was declared offline already (`down_since`), which no restart undoes.
    pub fn status_grace_ms(&self, node: &NodeRecord, watching_since: i64) -> u64 {
        let since_start = |seen: i64| watching_since.saturating_sub(seen).max(0) as u64;
        let away = if node.down_since.is_some() { 0 } else { node.last_seen.map_or(0, since_start) };
        self.grace_ms(node).saturating_add(away)
    }

    /// How often a down node or job is reminded about, in ms; `None` when off.
    pub fn remind_ms(&self) -> Option<i64> {
        self.remind_every_secs.map(|s| s.saturating_mul(1000) as i64)
    }

    fn min_down_ms(&self, node: &NodeRecord) -> u64 {
        self.min_down_secs.unwrap_or(node.interval_secs()).saturating_mul(1000)
    }

    /// When a node last heard from at `last_seen` is declared offline, if it stays silent.
    pub fn offline_at(&self, node: &NodeRecord, last_seen: i64) -> i64 {
        last_seen.saturating_add(self.grace_ms(node).saturating_add(self.min_down_ms(node)) as i64)
    }

    /// A warning when the global grace is shorter than nodes beating every `interval_secs`
    /// are allowed, and so will not be used for them.
    pub fn short_grace_warning(&self, interval_secs: u64) -> Option<String> {
        let grace = self.grace_secs?;
        let floor = MIN_GRACE_INTERVALS * interval_secs;
        (grace < floor).then(|| {
            format!(
                "--grace-secs {grace} is shorter than {MIN_GRACE_INTERVALS} intervals for nodes that beat every \
                 {interval_secs} s: they get {floor} s of grace (grace is never under {MIN_GRACE_INTERVALS} × a node's \
                 interval, or they would flap)"
            )
        })
    }
}

/// Since when this collector has been watching, and when it was away before that.
/// Nobody is blamed for the collector's own absence: a node's silence counts only while
/// the collector was watching ([`Watching::silence_from`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, miniserde::Serialize, miniserde::Deserialize)]
pub struct Watching {
    /// When this collector started (Unix ms).
    pub since: i64,
    /// When the previous run was last known alive, if it was away long enough to say so.
    pub away_from: Option<i64>,
    /// The collector's recent absences, oldest first, at most [`ABSENCES_KEPT`]: restarts,
    /// pauses and suspends. `None` in a store written before they were kept.
    pub absences: Option<Vec<Absence>>,
    /// Since when every absence is in `absences` (when the oldest dropped one ended, or
    /// when they began to be kept).
    pub absences_from: Option<i64>,
}

/// A time the collector did not run: `from` when it was last known to, `to` when it ran again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, miniserde::Serialize, miniserde::Deserialize)]
pub struct Absence {
    pub from: i64,
    pub to: i64,
}

/// How many of the collector's absences [`Watching`] keeps. A node silent since before the
/// oldest gets its grace from when that absence ended, as after any restart.
pub const ABSENCES_KEPT: usize = 64;

impl Watching {
    /// Watching afresh from `now`, after the absence `away` (if it is known) that
    /// followed `self`.
    pub fn restarted(&self, now: i64, away: Option<Absence>, away_noted: bool) -> Watching {
        let mut absences = self.absences.clone().unwrap_or_default();
        let mut absences_from = if self.absences.is_some() { self.absences_from } else { None };
        absences_from.get_or_insert(away.map_or(now, |a| a.from));
        // None reaches past now (the clock may have stepped back since one was kept).
        absences.retain(|a| a.from < now);
        for a in &mut absences {
            a.to = a.to.min(now);
        }
        if let Some(away) = away.filter(|a| a.to > a.from) {
            // One that overlaps the last (noticed again while the last was being kept)
            // extends it, so that no time counts twice.
            match absences.last_mut() {
                Some(last) if away.from <= last.to => {
                    last.from = last.from.min(away.from);
                    last.to = last.to.max(away.to);
                }
                _ => absences.push(away),
            }
        }
        if absences.len() > ABSENCES_KEPT {
            let dropped: Vec<Absence> = absences.drain(..absences.len() - ABSENCES_KEPT).collect();
            absences_from = absences_from.max(dropped.last().map(|a| a.to));
        }
        Watching {
            since: now,
            away_from: away.filter(|_| away_noted).map(|a| a.from),
            absences: Some(absences),
            absences_from,
        }
    }

    /// When the silence of a node last heard from at `seen` began, in the collector's own
    /// time: `seen`, moved on by every absence of the collector since, so that a collector
    /// that stops and starts again and again (a crash loop) still declares a dead node
    /// offline once it has watched it stay silent for its grace. Before the absences are
    /// known, silence counts from the start: a fresh grace.
    pub fn silence_from(&self, seen: i64) -> i64 {
        let (Some(absences), Some(known)) = (&self.absences, self.absences_from) else {
            return seen.max(self.since);
        };
        let start = seen.max(known);
        absences.iter().fold(start, |at, a| at.saturating_add((a.to - a.from.max(start)).max(0)))
    }

    /// `at`, or when the collector ran again if it was away then: the earliest it could
    /// have noticed what happened at `at`.
    pub fn first_watched(&self, at: i64) -> i64 {
        match &self.absences {
            Some(absences) => absences.iter().find(|a| a.from <= at && at < a.to).map_or(at, |a| a.to),
            None => at.max(self.since),
        }
    }

    /// How long the collector was away after `seen`, in ms.
    pub fn away_after(&self, seen: i64) -> i64 {
        match self.absences {
            Some(_) => self.silence_from(seen) - seen,
            None => self.away_from.filter(|_| seen < self.since).map_or(0, |from| self.since - from),
        }
    }
}

/// "15 s", "3 min", "2 h 5 min", "3 d 4 h": an honest length of time.
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{mins} min"),
        7200..172_800 if mins % 60 == 0 => format!("{hours} h"),
        7200..172_800 => format!("{hours} h {} min", mins % 60),
        _ if hours % 24 == 0 => format!("{days} d"),
        _ => format!("{days} d {} h", hours % 24),
    }
}

/// Something that happened to a node. `alert` says whether channels hear of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: Kind,
    /// The check involved, for check events.
    pub check: Option<String>,
    pub detail: String,
    /// For a recovery: when the node was declared down.
    pub down_since: Option<i64>,
    /// The checks involved, as they stand now: those that failed or passed again (one
    /// change lists every check that did so in one heartbeat), or all of them (flapping).
    pub checks: Vec<Check>,
}

fn change(kind: Kind, check: Option<&str>, detail: String) -> Change {
    Change { kind, check: check.map(String::from), detail, down_since: None, checks: Vec::new() }
}

/// A node whose checks change in more than this many heartbeats within [`FLAP_WINDOW_MS`]
/// is flapping: that is reported once, and its check changes are held back until they
/// have been steady for [`FLAP_WINDOW_MS`].
pub const FLAP_LIMIT: u64 = 5;
pub const FLAP_WINDOW_MS: i64 = 10 * 60_000;

/// What the checks of `new` changed since `old`: one change for every check that began
/// failing, one for every check that passes again or is no longer reported.
fn check_changes(old: Option<&Heartbeat>, new: &Heartbeat) -> Vec<Change> {
    let old_checks = old.and_then(|o| o.checks.as_deref()).unwrap_or_default();
    let (mut failed, mut back) = (Vec::new(), Vec::new());
    for check in new.checks.iter().flatten() {
        // A check never seen before counts as having been ok, so a failing one is reported.
        let was_ok = old_checks.iter().find(|c| c.name == check.name).is_none_or(|c| c.ok);
        if was_ok && !check.ok {
            failed.push(check.clone());
        } else if !was_ok && check.ok {
            back.push(check.clone());
        }
    }
    // A failing check the agent stopped reporting (removed from its list) is over too.
    for gone in old_checks.iter().filter(|c| !c.ok) {
        if !new.checks.iter().flatten().any(|c| c.name == gone.name) {
            back.push(Check { name: gone.name.clone(), ok: true, detail: NO_LONGER_REPORTED.into() });
        }
    }
    [grouped(Kind::CheckFailed, failed), grouped(Kind::CheckRecovered, back)].into_iter().flatten().collect()
}

const NO_LONGER_REPORTED: &str = "no longer reported";

/// Items in a sentence, the first [`LISTED`] of them: a chat message has a length limit
/// (Discord's is 2,000 characters); the alert's `checks` keeps them all.
fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    let shown = items[..items.len().min(LISTED)].join(", ");
    match items.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

const LISTED: usize = 10;

/// One change for several checks that changed the same way in one heartbeat.
fn grouped(kind: Kind, checks: Vec<Check>) -> Option<Change> {
    let (one, many) =
        if kind == Kind::CheckFailed { ("is failing", "are failing") } else { ("is ok again", "are ok again") };
    let detail = match checks.as_slice() {
        [] => return None,
        [check] if check.detail == NO_LONGER_REPORTED => format!("{} is {NO_LONGER_REPORTED}", check.name),
        [check] => format!("{} {one}: {}", check.name, check.detail),
        all => {
            let list = listed(all.iter().map(|c| format!("{} ({})", c.name, c.detail)));
            format!("{} checks {many}: {list}", all.len())
        }
    };
    let check = (checks.len() == 1).then(|| checks[0].name.as_str());
    Some(Change { checks: checks.clone(), ..change(kind, check, detail) })
}

/// Passes on a heartbeat's check changes, unless the node is flapping: past [`FLAP_LIMIT`]
/// heartbeats with check changes in [`FLAP_WINDOW_MS`], one `flapping` change stands for
/// them, and later ones are held back until the checks have been steady for
/// [`FLAP_WINDOW_MS`], when one `flapping_stopped` change says where they stand.
fn unless_flapping(node: &mut NodeRecord, changes: Vec<Change>, current: &[Check], now: i64) -> Vec<Change> {
    let changed = !changes.is_empty();
    let window = duration(FLAP_WINDOW_MS);
    if let Some(since) = node.flapping_since {
        if changed {
            node.flip_window = Some(now); // the last change, while flapping
            return Vec::new();
        }
        if node.flip_window.is_some_and(|last| now - last < FLAP_WINDOW_MS) {
            return Vec::new();
        }
        (node.flapping_since, node.flip_window, node.flips) = (None, None, None);
        let failing: Vec<&str> = current.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        let standing = if failing.is_empty() {
            "every check passes".to_owned()
        } else {
            format!("failing now: {}", listed(failing.iter().map(|name| name.to_string())))
        };
        let detail = format!("checks steady for {window} after flapping for {}; {standing}", duration(now - since));
        return vec![Change { checks: current.to_vec(), ..change(Kind::FlappingStopped, None, detail) }];
    }
    if !changed {
        return changes;
    }
    if node.flip_window.is_none_or(|start| now - start >= FLAP_WINDOW_MS) {
        (node.flip_window, node.flips) = (Some(now), Some(0));
    }
    let flips = node.flips.unwrap_or(0) + 1;
    node.flips = Some(flips);
    if flips <= FLAP_LIMIT {
        return changes;
    }
    (node.flapping_since, node.flip_window) = (Some(now), Some(now));
    let names = listed(changes.iter().flat_map(|c| &c.checks).map(|c| c.name.clone()));
    let detail = format!(
        "checks changed in {flips} heartbeats within {window} (lately {names}); check alerts are held until they are steady for {window}"
    );
    vec![Change { checks: current.to_vec(), ..change(Kind::Flapping, None, detail) }]
}

/// Takes in a node just enrolled at `now`: with `--pending-alert-secs`, the sweep looks
/// at it once that time has passed, in case it never sends a heartbeat.
pub fn on_enrolled(node: &mut NodeRecord, now: i64, policy: &Policy) {
    if node.last_seen.is_none() {
        node.deadline = policy.pending_alert_secs.map(|secs| now.saturating_add(secs.saturating_mul(1000) as i64));
    }
}

/// Records a heartbeat that arrived at `now`, updates the node's liveness state, and
/// says what changed since the previous heartbeat.
pub fn on_heartbeat(node: &mut NodeRecord, new: Heartbeat, now: i64, policy: &Policy) -> Vec<Change> {
    let old_skew = node.clock_skew_secs.unwrap_or(0).abs();
    let last_seen = node.last_seen;
    let old = node.record_heartbeat(new, now);
    node.first_seen.get_or_insert(now);
    let (old, new) = (old.as_ref(), node.heartbeat.as_ref().expect("just recorded"));
    let mut changes = Vec::new();
    node.down_from = None;
    if let Some(since) = node.down_since.take() {
        node.acked_at = None;
        let detail = match last_seen {
            Some(seen) => format!(
                "heard from again after {} offline ({} without a heartbeat)",
                duration(now - since),
                duration(now - seen)
            ),
            None => {
                format!("heard from for the first time, {} after it was enrolled", duration(now - node.enrolled_at))
            }
        };
        changes.push(Change { down_since: Some(since), ..change(Kind::Recovered, None, detail) });
        node.reminded_at = None;
    }
    if new.is_stopping() {
        changes.push(change(Kind::Stopped, None, "the agent stopped cleanly".into()));
    }
    if old.is_some_and(|old| rebooted(old, new)) {
        let uptime = new.uptime_secs.map_or_else(String::new, |u| format!(" (up {u} s)"));
        changes.push(change(Kind::Reboot, None, format!("the node rebooted{uptime}")));
    }
    let check_changes = check_changes(old, new);
    let current = new.checks.clone().unwrap_or_default();
    if !new.services_ok && old.is_none_or(|o| o.services_ok) {
        changes.push(change(Kind::ServicesFailed, None, "services_ok turned false".into()));
    } else if new.services_ok && old.is_some_and(|o| !o.services_ok) {
        changes.push(change(Kind::ServicesRecovered, None, "services_ok is true again".into()));
    }
    let skew = node.clock_skew_secs.unwrap_or(0);
    if skew.abs() > SKEW_LIMIT_SECS && old_skew <= SKEW_LIMIT_SECS {
        changes.push(change(Kind::ClockSkew, None, format!("the node's clock is {skew} s off the collector's")));
    }
    changes.extend(unless_flapping(node, check_changes, &current, now));
    // An earlier deadline that the next heartbeat should still beat is left where it is,
    // so that not every heartbeat moves the node in the index; one that would come due
    // first is moved now, in this batch, rather than by a sweep pass that reads and writes
    // the whole node again (at the default grace, every third heartbeat moves it).
    let offline_at = policy.offline_at(node, now);
    let next_beat = now.saturating_add((node.interval_secs() * 1000) as i64);
    let kept = node.deadline.filter(|d| *d <= offline_at && *d > next_beat);
    node.deadline = (!node.is_stopped()).then(|| kept.unwrap_or(offline_at));
    changes
}

/// Before taking in `new`, arrived at `now`, from an agent that announces no interval
/// (Beacon's, V1's): learns from the gap since the node's last heartbeat how often it
/// beats, so that it is judged by its own cadence and not by a guess (`NodeRecord::interval_secs`).
/// A gap says nothing of the cadence when it began with a clean stop, held a reboot, or
/// began before the collector's start at `watching_since` (its own absence).
/// A longer gap raises the cadence at once, to at most twice what it was, so a few lost
/// heartbeats raise it only for a while; a shorter one lowers it a quarter of the way, so
/// one early heartbeat (a retry, a send by hand) never makes the next on-time one late.
/// The learning starts from `UNANNOUNCED_INTERVAL_SECS`, above most agents' cadence, and
/// comes down to the real one: no alarm while it does.
pub fn learn_cadence(node: &mut NodeRecord, new: &Heartbeat, now: i64, watching_since: i64) {
    let (Some(seen), Some(old)) = (node.last_seen, node.heartbeat.as_ref()) else {
        return;
    };
    if new.interval_secs.is_some() || old.is_stopping() || rebooted(old, new) || seen < watching_since || now <= seen {
        return;
    }
    let gap = ((now - seen) as u64 + 500).div_euclid(1000).clamp(1, MAX_CADENCE_SECS);
    let cadence = node.cadence_secs.unwrap_or(crate::model::UNANNOUNCED_INTERVAL_SECS);
    // Lowered by at least a second, so that it comes all the way down to the gap.
    node.cadence_secs = Some(if gap > cadence { gap.min(2 * cadence) } else { cadence - (cadence - gap).div_ceil(4) });
}

/// Whether the node rebooted between two heartbeats: its boot id changed, or (for agents
/// that send none) its uptime went back.
fn rebooted(old: &Heartbeat, new: &Heartbeat) -> bool {
    match (&old.boot_id, &new.boot_id) {
        (Some(a), Some(b)) => a != b,
        _ => matches!((old.uptime_secs, new.uptime_secs), (Some(a), Some(b)) if b < a),
    }
}

/// The longest cadence learned: a day, the longest interval an agent may announce.
const MAX_CADENCE_SECS: u64 = 86_400;

/// Looks at a node whose deadline has passed: declares it offline, or reminds that it still is,
/// or, for a node never heard from, says so once (with `--pending-alert-secs`).
/// Silence counts only while the collector was watching (`Watching::silence_from`).
/// Sets the node's next deadline.
pub fn on_deadline(node: &mut NodeRecord, now: i64, policy: &Policy, watching: &Watching) -> Vec<Change> {
    let Some(seen) = node.last_seen else {
        node.deadline = None;
        let Some(after) = policy.pending_alert_secs else { return Vec::new() };
        let due = watching.silence_from(node.enrolled_at).saturating_add(after.saturating_mul(1000) as i64);
        if node.down_since.is_some() {
            return Vec::new();
        }
        if now < due {
            node.deadline = Some(due);
            return Vec::new();
        }
        node.down_since = Some(now);
        let detail = format!("enrolled {} ago and never heard from", duration(now - node.enrolled_at));
        return vec![change(Kind::Pending, None, detail)];
    };
    if node.is_stopped() {
        node.deadline = None;
        return Vec::new();
    }
    let remind_ms = policy.remind_every_secs.map(|s| (s * 1000) as i64);
    let mut changes = Vec::new();
    match node.down_since {
        None => {
            // A heartbeat moved it, or the collector was away: look again then.
            let offline_at = policy.offline_at(node, watching.silence_from(seen));
            if now < offline_at {
                node.deadline = Some(offline_at);
                return changes;
            }
            let silent = (now - seen) / 1000;
            let mut detail = format!("no heartbeat for {silent} s");
            let away = watching.away_after(seen);
            if away >= crate::alerts::AWAY_NOTED_MS {
                detail.push_str(&format!(
                    "; the collector itself was not running for {} s of that, which does not count against the node",
                    away / 1000
                ));
            }
            changes.push(change(Kind::Offline, None, detail));
            node.down_since = Some(now);
            // The outage began with the first heartbeat that did not come, or when the
            // collector ran again, if it was away then.
            let interval = (node.interval_secs() * 1000) as i64;
            node.down_from = Some(watching.first_watched(seen.saturating_add(interval)).min(now));
        }
        Some(since) => {
            let last = node.reminded_at.unwrap_or(since);
            if remind_ms.is_some_and(|every| now >= last + every) {
                changes.push(change(Kind::Reminder, None, format!("still offline, for {} now", duration(now - since))));
                node.reminded_at = Some(now);
            }
        }
    }
    let last = node.reminded_at.or(node.down_since).unwrap_or(now);
    node.deadline = remind_ms.map(|every| last + every);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use hearth_wire::{Check, State};

    const S: i64 = 1000;

    fn beat(interval: u64) -> Heartbeat {
        Heartbeat {
            interval_secs: Some(interval),
            boot_id: Some("boot-1".into()),
            services_ok: true,
            ..Default::default()
        }
    }

    /// Feeds heartbeats at `beats` (seconds) and sweeps every second up to `until`;
    /// returns every change with its time in seconds.
    fn simulate(beats: &[i64], until: i64, policy: &Policy) -> Vec<(i64, Kind)> {
        let mut node: NodeRecord = Default::default();
        let mut log = Vec::new();
        for t in 0..=until {
            let now = t * S;
            if beats.contains(&t) {
                for c in on_heartbeat(&mut node, beat(10), now, policy) {
                    log.push((t, c.kind));
                }
            }
            if node.deadline.is_some_and(|d| d <= now) {
                for c in on_deadline(&mut node, now, policy, &Watching::default()) {
                    log.push((t, c.kind));
                }
            }
        }
        log
    }

    #[test]
    fn one_missed_beat_never_pages() {
        // Interval 10 s: grace 30 s plus one interval of minimum down time = offline at 40 s of silence.
        let beats: Vec<i64> = (0..=200).step_by(10).filter(|t| *t != 50).collect();
        assert_eq!(simulate(&beats, 200, &Policy::default()), []);
        let late_beats: Vec<i64> = [0, 10, 20, 59, 69].into();
        assert_eq!(simulate(&late_beats, 80, &Policy::default()), [], "39 s of silence is still not offline");
    }

    #[test]
    fn a_node_that_stays_away_pages_once_reminds_on_schedule_and_recovers_once() {
        let policy = Policy { remind_every_secs: Some(3600), ..Policy::default() };
        let log = simulate(&[0, 10, 20, 3 * 3600], 3 * 3600 + 5, &policy);
        assert_eq!(
            log,
            [
                (60, Kind::Offline),
                (60 + 3600, Kind::Reminder),
                (60 + 7200, Kind::Reminder),
                (3 * 3600, Kind::Recovered)
            ]
        );
        let quiet = Policy { remind_every_secs: None, ..Policy::default() };
        assert_eq!(
            simulate(&[0, 10, 20, 3 * 3600], 3 * 3600, &quiet),
            [(60, Kind::Offline), (3 * 3600, Kind::Recovered)]
        );
    }

    /// After a restart, a node silent since before it reads `late` for its grace from the
    /// start; one declared offline before the restart stays `offline`.
    #[test]
    fn status_counts_silence_from_the_start_unless_already_declared_offline() {
        let policy = Policy::default();
        let mut node = NodeRecord::default();
        on_heartbeat(&mut node, beat(10), 0, &policy);
        let start = 300 * S;
        let judged = |node: &NodeRecord, now| node.status(now, policy.status_grace_ms(node, start));
        assert_eq!(judged(&node, start), Status::Late);
        assert_eq!(judged(&node, start + 30 * S), Status::Late);
        assert_eq!(judged(&node, start + 31 * S), Status::Offline);
        node.down_since = Some(41 * S);
        assert_eq!(judged(&node, start), Status::Offline, "declared before the restart");
    }

    #[test]
    fn grace_and_minimum_down_time_can_be_set() {
        let policy = Policy { grace_secs: Some(25), min_down_secs: Some(2), ..Policy::default() };
        assert_eq!(simulate(&[0], 40, &policy), [(27, Kind::Offline)]);
        let mut node = NodeRecord { grace_secs: Some(100), ..Default::default() };
        on_heartbeat(&mut node, beat(10), 0, &policy);
        assert_eq!(policy.offline_at(&node, 0), 102 * S, "a node's own grace wins over the global one");
    }

    /// A node beating on time moves in the deadline index on at most every other heartbeat
    /// (grace of 3 intervals, and the minimum down time, here one in three), and its
    /// deadline never comes due before its next heartbeat: the sweep never looks at it.
    #[test]
    fn heartbeats_on_time_move_the_deadline_only_when_it_would_come_due_first() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        let mut moves = 0;
        for n in 0..20 {
            let now = n * 10 * S;
            let before = node.deadline;
            on_heartbeat(&mut node, beat(10), now, &policy);
            moves += usize::from(node.deadline != before);
            let deadline = node.deadline.unwrap();
            assert!(deadline > now + 10 * S, "due before the next heartbeat at {now}: {deadline}");
            assert!(deadline <= policy.offline_at(&node, now), "later than the node may stay silent");
        }
        assert_eq!(moves, 7, "the first heartbeat, then every third moves it");
    }

    #[test]
    fn a_global_grace_shorter_than_the_interval_allows_never_makes_a_node_flap() {
        // Interval 10 s, --grace-secs 5: raised to 2 intervals for this node.
        let policy = Policy { grace_secs: Some(5), min_down_secs: Some(2), ..Policy::default() };
        let beats: Vec<i64> = (0..=200).step_by(10).collect();
        assert_eq!(simulate(&beats, 200, &policy), []);
        assert_eq!(simulate(&[0], 40, &policy), [(22, Kind::Offline)], "20 s of grace, then 2 s");
        assert!(policy.short_grace_warning(10).is_some_and(|w| w.contains("20 s of grace")));
        assert_eq!(Policy { grace_secs: Some(60), ..policy }.short_grace_warning(30), None);
    }

    #[test]
    fn a_collector_that_was_away_gives_every_node_a_fresh_grace_and_says_so() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        on_heartbeat(&mut node, beat(10), 0, &policy);
        assert_eq!(node.deadline, Some(40 * S));
        // The collector stopped at 5 s and started again at 300 s, long past the deadline.
        let watching = Watching { since: 300 * S, away_from: Some(5 * S), ..Watching::default() };
        assert_eq!(
            on_deadline(&mut node, 300 * S, &policy, &watching),
            [],
            "blamed the node for the collector's absence"
        );
        assert_eq!(node.deadline, Some(340 * S), "grace and minimum down time, counted from the start");
        let changes = on_deadline(&mut node, 340 * S, &policy, &watching);
        assert_eq!(changes.iter().map(|c| c.kind).collect::<Vec<_>>(), [Kind::Offline]);
        assert!(
            changes[0]
                .detail
                .contains("no heartbeat for 340 s; the collector itself was not running for 295 s of that"),
            "{changes:?}"
        );
        // A node heard from after the start owes nothing to the absence.
        let mut fresh: NodeRecord = Default::default();
        on_heartbeat(&mut fresh, beat(10), 310 * S, &policy);
        assert!(!on_deadline(&mut fresh, 350 * S, &policy, &watching)[0].detail.contains("collector"));
    }

    #[test]
    fn silence_counts_only_while_the_collector_watched() {
        let started = Watching::default().restarted(0, None, false);
        assert_eq!(started.silence_from(-50 * S), 0, "nothing is known from before the first start");
        // Away from 20 to 30 s and from 50 to 60 s.
        let watching = started.restarted(30 * S, Some(Absence { from: 20 * S, to: 30 * S }), false).restarted(
            60 * S,
            Some(Absence { from: 50 * S, to: 60 * S }),
            false,
        );
        assert_eq!(watching.silence_from(10 * S), 30 * S);
        assert_eq!(watching.silence_from(25 * S), 40 * S, "heard from during an absence");
        assert_eq!(watching.silence_from(55 * S), 60 * S);
        assert_eq!(watching.silence_from(70 * S), 70 * S);
        assert_eq!(watching.away_after(10 * S), 20 * S);
        assert_eq!(watching.first_watched(25 * S), 30 * S, "an outage that began while it was away");
        assert_eq!(watching.first_watched(40 * S), 40 * S);
        // One noticed again while it was being kept counts once; one past a clock that
        // stepped back is cut at it.
        let again = watching.restarted(62 * S, Some(Absence { from: 55 * S, to: 62 * S }), false);
        assert_eq!(again.silence_from(10 * S), 10 * S + 10 * S + 12 * S);
        let stepped_back = watching.restarted(52 * S, None, false);
        assert_eq!(stepped_back.silence_from(10 * S), 10 * S + 10 * S + 2 * S);
        assert_eq!(watching.since, 60 * S);
        // A store from before absences were kept: the first restart starts them.
        let old = Watching { since: 100 * S, away_from: None, ..Watching::default() };
        assert_eq!(old.silence_from(50 * S), 100 * S, "a fresh grace, as before");
        let upgraded = old.restarted(200 * S, Some(Absence { from: 150 * S, to: 200 * S }), true);
        assert_eq!(upgraded.silence_from(50 * S), 200 * S, "from before the last known start: a fresh grace");
        assert_eq!(upgraded.silence_from(160 * S), 200 * S);
        assert_eq!(upgraded.away_from, Some(150 * S));
        // Only so many are kept; a node silent since before the oldest kept gets a fresh
        // grace from its end.
        let mut many = started;
        for i in 1..=(ABSENCES_KEPT as i64 + 5) {
            many = many.restarted(i * 10 * S, Some(Absence { from: i * 10 * S - 2 * S, to: i * 10 * S }), false);
        }
        assert_eq!(many.absences.as_ref().map(Vec::len), Some(ABSENCES_KEPT));
        assert_eq!(many.absences_from, Some(50 * S), "the fifth dropped ended at 50 s");
        assert_eq!(many.silence_from(0), 50 * S + ABSENCES_KEPT as i64 * 2 * S);
    }

    #[test]
    fn a_recovery_says_when_the_node_went_down_and_for_how_long() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        on_heartbeat(&mut node, beat(10), 0, &policy);
        assert_eq!(on_deadline(&mut node, 40 * S, &policy, &Watching::default())[0].kind, Kind::Offline);
        let back = on_heartbeat(&mut node, beat(10), 55 * S, &policy);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].kind, back[0].down_since), (Kind::Recovered, Some(40 * S)));
        assert_eq!(back[0].detail, "heard from again after 15 s offline (55 s without a heartbeat)");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0 s"),
            (15_400, "15 s"),
            (119_999, "119 s"),
            (180_000, "3 min"),
            (7_199_000, "119 min"),
            (7_200_000, "2 h"),
            (7_500_000, "2 h 5 min"),
            (172_800_000, "2 d"),
            (187_200_000, "2 d 4 h"),
            (-5, "0 s"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn a_node_never_heard_from_pages_once_if_asked_and_recovers_with_its_first_beat() {
        let policy = Policy { pending_alert_secs: Some(600), ..Policy::default() };
        let mut node = NodeRecord { enrolled_at: 1000 * S, ..Default::default() };
        on_enrolled(&mut node, 1000 * S, &policy);
        assert_eq!(node.deadline, Some(1600 * S));
        let changes = on_deadline(&mut node, 1600 * S, &policy, &Watching::default());
        assert_eq!(changes.iter().map(|c| c.kind).collect::<Vec<_>>(), [Kind::Pending]);
        assert!(changes[0].detail.contains("enrolled 10 min ago and never heard from"), "{changes:?}");
        assert_eq!(node.deadline, None, "once is enough");
        let back = on_heartbeat(&mut node, beat(10), 1700 * S, &policy);
        assert_eq!((back[0].kind, back[0].down_since), (Kind::Recovered, Some(1600 * S)));
        assert!(back[0].detail.contains("for the first time"), "{back:?}");

        let mut quiet = NodeRecord::default();
        on_enrolled(&mut quiet, 0, &Policy::default());
        assert_eq!(quiet.deadline, None, "off by default");
    }

    #[test]
    fn a_failing_check_that_is_no_longer_reported_recovers() {
        let policy = Policy::default();
        let checks = |list: &[(&str, bool)]| {
            Some(list.iter().map(|(name, ok)| Check { name: (*name).into(), ok: *ok, detail: "x".into() }).collect())
        };
        let mut node: NodeRecord = Default::default();
        on_heartbeat(&mut node, Heartbeat { checks: checks(&[("a", false), ("b", true)]), ..beat(10) }, 0, &policy);
        let cases = [
            (checks(&[("b", true)]), vec![(Kind::CheckRecovered, "a is no longer reported")]),
            (checks(&[("b", false)]), vec![(Kind::CheckFailed, "b is failing: x")]),
            (None, vec![(Kind::CheckRecovered, "b is no longer reported")]),
            (checks(&[("c", true)]), vec![]),
            (checks(&[]), vec![]),
        ];
        for (list, expected) in cases {
            let got = on_heartbeat(&mut node, Heartbeat { checks: list.clone(), ..beat(10) }, 0, &policy);
            let got: Vec<(Kind, &str)> = got.iter().map(|c| (c.kind, c.detail.as_str())).collect();
            assert_eq!(got, expected, "{list:?}");
        }
    }

    fn with_checks(failing: &[&str], passing: &[&str]) -> Heartbeat {
        let check = |name: &&str, ok: bool| Check {
            name: (*name).into(),
            ok,
            detail: if ok { "active" } else { "inactive" }.into(),
        };
        let checks = failing.iter().map(|n| check(n, false)).chain(passing.iter().map(|n| check(n, true))).collect();
        Heartbeat { checks: Some(checks), ..beat(10) }
    }

    #[test]
    fn checks_that_change_together_are_one_change_that_lists_them() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        on_heartbeat(&mut node, with_checks(&[], &["a", "b", "c"]), 0, &policy);
        let failed = on_heartbeat(&mut node, with_checks(&["a", "b"], &["c"]), 10 * S, &policy);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!((failed[0].kind, failed[0].check.as_deref()), (Kind::CheckFailed, None));
        assert_eq!(failed[0].detail, "2 checks are failing: a (inactive), b (inactive)");
        assert_eq!(failed[0].checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let back = on_heartbeat(&mut node, with_checks(&[], &["b", "c"]), 20 * S, &policy);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].detail, "2 checks are ok again: b (active), a (no longer reported)");
    }

    #[test]
    fn a_flapping_node_is_reported_once_then_held_until_steady() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        let checks: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
        let names: Vec<&str> = checks.iter().map(String::as_str).collect();
        let mut log = Vec::new();
        // Every heartbeat for 1,000 s flips all 64 checks; then they stay ok; at 2,010 s they fail once.
        for i in 0..=210 {
            let failing = (1..=100).contains(&i) && i % 2 == 1 || i == 201;
            let hb = if failing { with_checks(&names, &[]) } else { with_checks(&[], &names) };
            for change in on_heartbeat(&mut node, hb, i * 10 * S, &policy) {
                log.push((i * 10, change.kind, change.detail));
            }
        }
        let kinds: Vec<(i64, Kind)> = log.iter().map(|(t, k, _)| (*t, *k)).collect();
        assert_eq!(
            kinds,
            [
                (10, Kind::CheckFailed),
                (20, Kind::CheckRecovered),
                (30, Kind::CheckFailed),
                (40, Kind::CheckRecovered),
                (50, Kind::CheckFailed),
                (60, Kind::Flapping),
                (1600, Kind::FlappingStopped),
                (2010, Kind::CheckFailed),
                (2020, Kind::CheckRecovered),
            ]
        );
        assert!(log[5].2.contains("6 heartbeats within 10 min (lately c0, c1,"), "{}", log[5].2);
        assert!(log[5].2.contains("c9 and 54 more)"), "a long list is cut short: {}", log[5].2);
        assert!(log[6].2.contains("every check passes"), "{}", log[6].2);
    }

    #[test]
    fn a_clean_stop_never_pages() {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        on_heartbeat(&mut node, beat(10), 0, &policy);
        let stopping = Heartbeat { state: Some(State::Stopping), ..beat(10) };
        let changes = on_heartbeat(&mut node, stopping, 5 * S, &policy);
        assert_eq!(changes.iter().map(|c| c.kind).collect::<Vec<_>>(), [Kind::Stopped]);
        assert_eq!(node.deadline, None, "a stopped node is not watched");
        assert_eq!(on_deadline(&mut node, 1_000 * S, &policy, &Watching::default()), []);
    }

    #[test]
    fn heartbeats_report_reboots_checks_services_and_skew() {
        let policy = Policy::default();
        let check = |ok| {
            Some(vec![Check { name: "cloudflared".into(), ok, detail: if ok { "active" } else { "inactive" }.into() }])
        };
        let mut node: NodeRecord = Default::default();
        let first = Heartbeat { checks: check(true), uptime_secs: Some(500), ..beat(10) };
        assert_eq!(on_heartbeat(&mut node, first.clone(), 0, &policy), []);
        let late_clock = Heartbeat { timestamp: "1970-01-01T00:01:30Z".into(), ..first.clone() };
        let cases: Vec<(Heartbeat, Vec<Kind>)> = vec![
            (Heartbeat { checks: check(false), ..first.clone() }, vec![Kind::CheckFailed]),
            (Heartbeat { checks: check(false), ..first.clone() }, vec![]),
            (Heartbeat { checks: check(true), ..first.clone() }, vec![Kind::CheckRecovered]),
            (Heartbeat { boot_id: Some("boot-2".into()), ..first.clone() }, vec![Kind::Reboot]),
            (Heartbeat { boot_id: None, uptime_secs: Some(20), ..first.clone() }, vec![Kind::Reboot]),
            (Heartbeat { services_ok: false, ..first.clone() }, vec![Kind::ServicesFailed]),
            (first.clone(), vec![Kind::ServicesRecovered]),
            (late_clock.clone(), vec![Kind::ClockSkew]),
            (late_clock, vec![]),
            (first.clone(), vec![]),
        ];
        for (hb, expected) in cases {
            let got: Vec<Kind> = on_heartbeat(&mut node, hb.clone(), 0, &policy).into_iter().map(|c| c.kind).collect();
            assert_eq!(got, expected, "{hb:?}");
        }
    }

    /// An agent that announces no interval (Beacon's, V1's), beating at `beats` (seconds),
    /// taken in as `take_beat` does, with a sweep every second up to `until`: every change,
    /// and the node's status each second.
    fn unannounced(beats: &[i64], until: i64, watching_since: i64) -> (Vec<(i64, Kind)>, Vec<Status>, NodeRecord) {
        let policy = Policy::default();
        let mut node: NodeRecord = Default::default();
        let (mut log, mut statuses) = (Vec::new(), Vec::new());
        for t in 0..=until {
            let now = t * S;
            if beats.contains(&t) {
                let hb = Heartbeat { services_ok: true, ..Default::default() };
                learn_cadence(&mut node, &hb, now, watching_since * S);
                log.extend(on_heartbeat(&mut node, hb, now, &policy).into_iter().map(|c| (t, c.kind)));
            }
            if node.deadline.is_some_and(|d| d <= now) {
                log.extend(on_deadline(&mut node, now, &policy, &Watching::default()).into_iter().map(|c| (t, c.kind)));
            }
            statuses.push(node.status(now, policy.grace_ms(&node)));
        }
        (log, statuses, node)
    }

    #[test]
    fn an_agent_that_announces_no_interval_is_judged_by_its_own_cadence() {
        for every in [10, 30, 60, 300, 450] {
            let beats: Vec<i64> = (0..25).map(|n| n * every).collect();
            let last = *beats.last().unwrap();
            let (log, statuses, node) = unannounced(&beats, last + 8 * every, 0);
            let cadence = node.cadence_secs.unwrap();
            assert_eq!(cadence, every as u64, "every {every} s: learned {cadence}");
            let offline: Vec<i64> = log.iter().filter(|(_, k)| *k == Kind::Offline).map(|(t, _)| *t).collect();
            // Grace of 3 intervals and one of minimum down time, by the learned cadence.
            assert_eq!(offline, [last + 4 * cadence as i64], "every {every} s: {log:?}");
            let on_time = &statuses[every as usize..=last as usize];
            let late = on_time.iter().filter(|s| **s != Status::Online).count();
            assert!(late == 0 || every > 120, "every {every} s: {late} s not online while beating on time");
        }
        // Until a second heartbeat shows its cadence, such a node is judged at 120 s.
        let (log, _, _) = unannounced(&[0], 600, 0);
        assert_eq!(log, [(480, Kind::Offline)]);
    }

    #[test]
    fn one_early_heartbeat_does_not_make_the_next_one_late() {
        let mut beats: Vec<i64> = (0..20).map(|n| n * 60).collect();
        beats.push(19 * 60 + 5); // a send by hand, or a retry
        beats.extend((20..25).map(|n| n * 60));
        let (log, statuses, node) = unannounced(&beats, 24 * 60, 0);
        assert_eq!(log, [], "no alarm");
        assert!(statuses[60..].iter().all(|s| *s == Status::Online), "late on time: {statuses:?}");
        assert!((60..=63).contains(&node.cadence_secs.unwrap()), "{:?}", node.cadence_secs);
    }

    #[test]
    fn gaps_that_say_nothing_of_the_cadence_are_not_learned() {
        let beat = |boot: &str, state| Heartbeat { boot_id: Some(boot.into()), state, ..Default::default() };
        let seen = |last: Heartbeat, cadence| NodeRecord {
            last_seen: Some(0),
            heartbeat: Some(last),
            cadence_secs: cadence,
            ..Default::default()
        };
        let cases = [
            ("after a clean stop", seen(beat("b", Some(State::Stopping)), Some(30)), beat("b", None), 0),
            ("across a reboot", seen(beat("a", None), Some(30)), beat("b", None), 0),
            ("while the collector was away", seen(beat("b", None), Some(30)), beat("b", None), 1),
            (
                "from an agent that announces one",
                seen(beat("b", None), None),
                Heartbeat { interval_secs: Some(600), ..beat("b", None) },
                0,
            ),
        ];
        for (what, mut node, new, watching_since) in cases {
            let before = node.cadence_secs;
            learn_cadence(&mut node, &new, 3_600 * S, watching_since * S);
            assert_eq!(node.cadence_secs, before, "{what}");
        }
        // A longer gap raises it at once, to at most twice what it was.
        let mut node = seen(beat("b", None), Some(30));
        learn_cadence(&mut node, &beat("b", None), 45 * S, 0);
        assert_eq!(node.cadence_secs, Some(45));
        let mut after_outage = node.clone();
        learn_cadence(&mut after_outage, &beat("b", None), 3_600 * S, 0);
        assert_eq!(after_outage.cadence_secs, Some(90));
    }
}
