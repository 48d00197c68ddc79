//! When a node counts as down, and what a heartbeat says has changed.
//! Pure: every function is handed the time, so tests never wait through a grace period.

use crate::model::NodeRecord;
use hearth_wire::Heartbeat;

/// How long silence is tolerated, and how often a down node is reminded about.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Overrides 3 × the node's interval for every node without its own grace.
    pub grace_secs: Option<u64>,
    /// How long past grace a node must stay silent before it is declared offline;
    /// `None` means one interval.
    pub min_down_secs: Option<u64>,
    /// How often to remind while a node stays down; `None` turns reminders off.
    pub remind_every_secs: Option<u64>,
}

/// Clock skew past this many seconds is worth an event.
pub const SKEW_LIMIT_SECS: i64 = 60;

impl Policy {
    pub fn grace_ms(&self, node: &NodeRecord) -> u64 {
        node.grace_secs.or(self.grace_secs).unwrap_or(3 * node.interval_secs()) * 1000
    }

    fn min_down_ms(&self, node: &NodeRecord) -> u64 {
        self.min_down_secs.unwrap_or(node.interval_secs()) * 1000
    }

    /// When a node last heard from at `last_seen` is declared offline, if it stays silent.
    pub fn offline_at(&self, node: &NodeRecord, last_seen: i64) -> i64 {
        last_seen.saturating_add((self.grace_ms(node) + self.min_down_ms(node)) as i64)
    }
}

/// Something that happened to a node. `alert` says whether channels hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    /// The check involved, for check events.
    pub check: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Offline,
    Recovered,
    Stopped,
    Reboot,
    CheckFailed,
    CheckRecovered,
    ServicesFailed,
    ClockSkew,
    Reminder,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Offline => "offline",
            Kind::Recovered => "recovered",
            Kind::Stopped => "stopped",
            Kind::Reboot => "reboot",
            Kind::CheckFailed => "check_failed",
            Kind::CheckRecovered => "check_recovered",
            Kind::ServicesFailed => "services_failed",
            Kind::ClockSkew => "clock_skew",
            Kind::Reminder => "reminder",
        }
    }

    /// Whether channels are told (reboot only where a channel asks for it).
    pub fn alerts(self) -> bool {
        matches!(
            self,
            Kind::Offline | Kind::Recovered | Kind::CheckFailed | Kind::CheckRecovered | Kind::Reboot | Kind::Reminder
        )
    }
}

fn change(kind: Kind, check: Option<&str>, detail: String) -> Change {
    Change { kind, check: check.map(String::from), detail }
}

/// Records a heartbeat that arrived at `now`, updates the node's liveness state, and
/// says what changed since the previous heartbeat.
pub fn on_heartbeat(node: &mut NodeRecord, new: Heartbeat, now: i64, policy: &Policy) -> Vec<Change> {
    let old_skew = node.clock_skew_secs.unwrap_or(0).abs();
    let old = node.record_heartbeat(new, now);
    let (old, new) = (old.as_ref(), node.heartbeat.as_ref().expect("just recorded"));
    let mut changes = Vec::new();
    if let Some(since) = node.down_since.take() {
        let minutes = (now - since).max(0) / 60_000;
        changes.push(change(Kind::Recovered, None, format!("heard from again after {minutes} min offline")));
        node.reminded_at = None;
    }
    if new.is_stopping() {
        changes.push(change(Kind::Stopped, None, "the agent stopped cleanly".into()));
    }
    let rebooted = match (old.and_then(|o| o.boot_id.as_ref()), new.boot_id.as_ref()) {
        (Some(a), Some(b)) => a != b,
        _ => matches!((old.and_then(|o| o.uptime_secs), new.uptime_secs), (Some(a), Some(b)) if b < a),
    };
    if rebooted {
        let uptime = new.uptime_secs.map_or_else(String::new, |u| format!(" (up {u} s)"));
        changes.push(change(Kind::Reboot, None, format!("the node rebooted{uptime}")));
    }
    for check in new.checks.iter().flatten() {
        // A check never seen before counts as having been ok, so a failing one is reported.
        let was_ok = old
            .and_then(|o| o.checks.as_ref())
            .and_then(|checks| checks.iter().find(|c| c.name == check.name))
            .is_none_or(|c| c.ok);
        if was_ok && !check.ok {
            changes.push(change(
                Kind::CheckFailed,
                Some(&check.name),
                format!("{} is failing: {}", check.name, check.detail),
            ));
        } else if !was_ok && check.ok {
            changes.push(change(
                Kind::CheckRecovered,
                Some(&check.name),
                format!("{} is ok again: {}", check.name, check.detail),
            ));
        }
    }
    if !new.services_ok && old.is_none_or(|o| o.services_ok) {
        changes.push(change(Kind::ServicesFailed, None, "services_ok turned false".into()));
    }
    let skew = node.clock_skew_secs.unwrap_or(0);
    if skew.abs() > SKEW_LIMIT_SECS && old_skew <= SKEW_LIMIT_SECS {
        changes.push(change(Kind::ClockSkew, None, format!("the node's clock is {skew} s off the collector's")));
    }
    // An earlier deadline is left where it is: the sweep then finds the node not yet offline
    // and moves it once, instead of every heartbeat moving it in the index.
    let offline_at = policy.offline_at(node, now);
    node.deadline = (!node.is_stopped()).then(|| node.deadline.filter(|d| *d <= offline_at).unwrap_or(offline_at));
    changes
}

/// Looks at a node whose deadline has passed: declares it offline, or reminds that it still is.
/// Sets the node's next deadline.
pub fn on_deadline(node: &mut NodeRecord, now: i64, policy: &Policy) -> Vec<Change> {
    let Some(seen) = node.last_seen else {
        node.deadline = None;
        return Vec::new();
    };
    if node.is_stopped() {
        node.deadline = None;
        return Vec::new();
    }
    let remind_ms = policy.remind_every_secs.map(|s| (s * 1000) as i64);
    let mut changes = Vec::new();
    match node.down_since {
        None => {
            let offline_at = policy.offline_at(node, seen);
            if now < offline_at {
                node.deadline = Some(offline_at); // a heartbeat moved it; look again then
                return changes;
            }
            let silent = (now - seen) / 1000;
            changes.push(change(Kind::Offline, None, format!("no heartbeat for {silent} s")));
            node.down_since = Some(now);
        }
        Some(since) => {
            let last = node.reminded_at.unwrap_or(since);
            if remind_ms.is_some_and(|every| now >= last + every) {
                let hours = (now - since) / 3_600_000;
                changes.push(change(Kind::Reminder, None, format!("still offline, for {hours} h now")));
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
                for c in on_deadline(&mut node, now, policy) {
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

    #[test]
    fn grace_and_minimum_down_time_can_be_set() {
        let policy = Policy { grace_secs: Some(5), min_down_secs: Some(2), ..Policy::default() };
        assert_eq!(simulate(&[0], 20, &policy), [(7, Kind::Offline)]);
        let mut node = NodeRecord { grace_secs: Some(100), ..Default::default() };
        on_heartbeat(&mut node, beat(10), 0, &policy);
        assert_eq!(policy.offline_at(&node, 0), 102 * S, "a node's own grace wins over the global one");
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
        assert_eq!(on_deadline(&mut node, 1_000 * S, &policy), []);
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
            (late_clock.clone(), vec![Kind::ClockSkew]),
            (late_clock, vec![]),
            (first.clone(), vec![]),
        ];
        for (hb, expected) in cases {
            let got: Vec<Kind> = on_heartbeat(&mut node, hb.clone(), 0, &policy).into_iter().map(|c| c.kind).collect();
            assert_eq!(got, expected, "{hb:?}");
        }
    }
}
