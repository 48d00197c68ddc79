//! Maintenance windows, silences and acknowledgements: when alerts about a node are held.
//! Pure: handed the records and the time. `alerts` applies the rule where alerts are made.
//!
//! A window is one-off (start, end) or recurring (a 5-field cron expression, a duration
//! and an IANA time zone), and covers every node, some node ids, or some tags. A silence
//! mutes a node or a tag until a time. While either holds, offline and check alerts are
//! held (their events are still recorded, marked); when the hold ends, a node still down
//! alerts once. An acknowledged node gets no reminders until it recovers.

use crate::model::{MaintenanceRecord, NodeRecord, SilenceRecord};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;

/// The longest a recurring window may last: a week.
pub const MAX_DURATION_SECS: u64 = 7 * 86_400;
/// The longest a one-off window or a silence may last: a year.
pub const MAX_SPAN_MS: i64 = 366 * 86_400_000;
/// How many occurrences of a recurring window one question looks at, at most: enough for
/// an every-minute pattern over a few days, and a bound on the work any pattern costs.
const MAX_OCCURRENCES: usize = 10_000;

/// When a window applies.
#[derive(Debug, Clone)]
pub enum Schedule {
    Once { start: i64, end: i64 },
    Recurring { cron: Box<Cron>, duration_ms: i64, zone: Tz },
}

/// Which nodes a window or silence covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    All,
    Nodes(Vec<String>),
    Tags(Vec<String>),
}

impl Scope {
    /// The scope stored as node ids and tags (both empty: every node).
    pub fn of(node_ids: &[String], tags: &[String]) -> Scope {
        if !node_ids.is_empty() {
            Scope::Nodes(node_ids.to_vec())
        } else if !tags.is_empty() {
            Scope::Tags(tags.to_vec())
        } else {
            Scope::All
        }
    }

    pub fn covers(&self, node: &NodeRecord) -> bool {
        match self {
            Scope::All => true,
            Scope::Nodes(ids) => ids.contains(&node.node_id),
            Scope::Tags(tags) => node.all_tags().iter().any(|t| tags.contains(t)),
        }
    }
}

/// A window, parsed.
#[derive(Debug, Clone)]
pub struct Window {
    pub schedule: Schedule,
    pub scope: Scope,
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron `{text}` has {fields} fields; write 5: minute hour day-of-month month day-of-week (`0 2 * * 0` is Sundays at 02:00)"
        ));
    }
    Cron::from_str(text).map_err(|e| format!("cron `{text}` is not valid: {e}"))
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>()
        .map_err(|_| format!("`{text}` is not a time zone; use an IANA name such as Europe/Berlin or UTC"))
}

impl Window {
    /// The window a stored record describes; an error names what is wrong with it.
    pub fn parse(record: &MaintenanceRecord) -> Result<Window, String> {
        let scope = Scope::of(&record.node_ids, &record.tags);
        let schedule = match (&record.cron, record.start, record.end) {
            (Some(cron), None, None) => {
                let duration = record.duration_secs.unwrap_or(0);
                if !(60..=MAX_DURATION_SECS).contains(&duration) {
                    return Err(format!(
                        "a recurring window lasts from 60 to {MAX_DURATION_SECS} seconds (`--duration` on the \
                         command line, `duration_secs` in the API), not {duration}"
                    ));
                }
                let zone = parse_zone(record.time_zone.as_deref().unwrap_or("UTC"))?;
                Schedule::Recurring { cron: Box::new(parse_cron(cron)?), duration_ms: duration as i64 * 1000, zone }
            }
            (None, Some(start), Some(end)) => {
                if end <= start || end - start > MAX_SPAN_MS {
                    return Err("a one-off window needs an end after its start, at most a year later".into());
                }
                Schedule::Once { start, end }
            }
            _ => return Err(
                "a window is either one-off (a start and an end) or recurring (a cron expression and a duration, in a \
                 time zone), not both or neither"
                    .into(),
            ),
        };
        Ok(Window { schedule, scope })
    }

    /// The occurrence that holds `now`, as its start and end.
    pub fn active_at(&self, now: i64) -> Option<(i64, i64)> {
        match &self.schedule {
            Schedule::Once { start, end } => (*start <= now && now < *end).then_some((*start, *end)),
            Schedule::Recurring { cron, duration_ms, zone } => {
                let at = instant(now, zone)?;
                // The latest start at or before now is the one that ends last.
                let start = cron.find_previous_occurrence(&at, true).ok()?.timestamp_millis();
                (now < start + duration_ms).then_some((start, start + duration_ms))
            }
        }
    }

    /// Every occurrence that overlaps `[from, to)`, as start and end, at most [`MAX_OCCURRENCES`].
    pub fn occurrences(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        match &self.schedule {
            Schedule::Once { start, end } => {
                if *start < to && from < *end {
                    vec![(*start, *end)]
                } else {
                    Vec::new()
                }
            }
            Schedule::Recurring { cron, duration_ms, zone } => {
                let mut out = Vec::new();
                let Some(first) = instant(from - duration_ms, zone) else { return out };
                for start in cron.iter_after(first).take(MAX_OCCURRENCES) {
                    let start = start.timestamp_millis();
                    if start >= to {
                        break;
                    }
                    if start + duration_ms > from {
                        out.push((start, start + duration_ms));
                    }
                }
                out
            }
        }
    }

    /// The next start after `now`, if any, for listings.
    pub fn next_start(&self, now: i64) -> Option<i64> {
        match &self.schedule {
            Schedule::Once { start, .. } => (*start > now).then_some(*start),
            Schedule::Recurring { cron, zone, .. } => {
                Some(cron.find_next_occurrence(&instant(now, zone)?, false).ok()?.timestamp_millis())
            }
        }
    }
}

fn instant(ms: i64, zone: &Tz) -> Option<DateTime<Tz>> {
    Some(Utc.timestamp_millis_opt(ms).single()?.with_timezone(zone))
}

/// Checks a window about to be stored at `now`: its schedule, scope and reason. A window
/// that would never hold anything (over already, or a cron that names no date that exists)
/// is refused: its owner would count on it, and be paged.
pub fn check_window(record: &MaintenanceRecord, now: i64) -> Result<Window, String> {
    check_reason(&record.reason)?;
    if !record.node_ids.is_empty() && !record.tags.is_empty() {
        return Err("a window covers some node ids or some tags (or, with neither, every node), not both".into());
    }
    if record.node_ids.len() > 1000 || record.tags.len() > 32 {
        return Err("a window names at most 1000 node ids and 32 tags".into());
    }
    let window = Window::parse(record)?;
    match (&window.schedule, record.cron.as_deref()) {
        (Schedule::Once { end, .. }, _) if *end <= now => {
            Err("this window ended already: give an end in the future".into())
        }
        (Schedule::Recurring { .. }, Some(cron)) if window.next_start(now).is_none() => {
            Err(format!("the cron schedule `{cron}` names no date that exists (like 30 February)"))
        }
        _ => Ok(window),
    }
}

/// That every node id a window or silence names is a node's (`known`): one for an id
/// mistyped or gone would hold nothing, and the node meant would page through it.
pub fn check_nodes<'a>(
    ids: impl IntoIterator<Item = &'a String>,
    mut known: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    match ids.into_iter().find(|id| !known(id)) {
        Some(id) => Err(format!("no node has the id {id}, so nothing would be held; see the node list")),
        None => Ok(()),
    }
}

/// Checks a silence about to be stored at `now`.
pub fn check_silence(silence: &SilenceRecord, now: i64) -> Result<(), String> {
    check_reason(&silence.reason)?;
    if silence.node_id.is_some() == silence.tag.is_some() {
        return Err("a silence mutes one node (node_id) or one tag (tag)".into());
    }
    if silence.tag.as_deref().is_some_and(|tag| tag.trim().is_empty()) {
        return Err("give the tag to silence: an empty one matches no node".into());
    }
    if silence.until <= now + 59_999 || silence.until - now > MAX_SPAN_MS {
        return Err("a silence lasts from a minute to a year".into());
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err("give a reason: 1 to 200 characters, without control characters".into());
    }
    Ok(())
}

/// A window in a sentence, for the audit log.
pub fn describe_window(w: &MaintenanceRecord) -> String {
    let when = match (&w.cron, w.start, w.end) {
        (Some(cron), _, _) => {
            format!("`{cron}` for {} s in {}", w.duration_secs.unwrap_or(0), w.time_zone.as_deref().unwrap_or("UTC"))
        }
        (None, Some(start), Some(end)) => {
            format!("{} to {}", hearth_wire::format_rfc3339(start), hearth_wire::format_rfc3339(end))
        }
        _ => "no schedule".into(),
    };
    let scope = match Scope::of(&w.node_ids, &w.tags) {
        Scope::All => "every node".to_owned(),
        Scope::Nodes(ids) => format!("nodes {}", ids.join(", ")),
        Scope::Tags(tags) => format!("tags {}", tags.join(", ")),
    };
    format!("{when}, {scope}: {}", w.reason)
}

/// A silence in a sentence, for the audit log.
pub fn describe_silence(s: &SilenceRecord) -> String {
    let what = match (&s.node_id, &s.tag) {
        (Some(id), _) => format!("node {id}"),
        (_, Some(tag)) => format!("tag {tag}"),
        _ => "nothing".into(),
    };
    format!("{what} until {}: {}", hearth_wire::format_rfc3339(s.until), s.reason)
}

/// Why alerts about a node are held now, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub kind: HoldKind,
    /// When it ends (the latest end of what holds it now).
    pub until: i64,
    /// The reason given, for the event.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    Maintenance,
    Silenced,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Maintenance => "maintenance",
            HoldKind::Silenced => "silenced",
        }
    }

    /// What holds this way, as errors name it.
    pub fn noun(self) -> &'static str {
        match self {
            HoldKind::Maintenance => "maintenance window",
            HoldKind::Silenced => "silence",
        }
    }

    /// The audit log's name for removing one.
    pub fn removed_event(self) -> &'static str {
        match self {
            HoldKind::Maintenance => "maintenance_removed",
            HoldKind::Silenced => "silence_removed",
        }
    }
}

/// Whether anything holds alerts about `node` at `now`: a maintenance window first, then a silence.
pub fn hold(
    node: &NodeRecord,
    now: i64,
    windows: &[(MaintenanceRecord, Window)],
    silences: &[SilenceRecord],
) -> Option<Hold> {
    let mut found: Option<Hold> = None;
    for (record, window) in windows.iter().filter(|(_, w)| w.scope.covers(node)) {
        if let Some((_, end)) = window.active_at(now) {
            if found.as_ref().is_none_or(|h| end > h.until) {
                found = Some(Hold { kind: HoldKind::Maintenance, until: end, reason: record.reason.clone() });
            }
        }
    }
    if found.is_some() {
        return found;
    }
    for silence in silences.iter().filter(|s| s.until > now && silence_covers(s, node)) {
        if found.as_ref().is_none_or(|h| silence.until > h.until) {
            found = Some(Hold { kind: HoldKind::Silenced, until: silence.until, reason: silence.reason.clone() });
        }
    }
    found
}

pub fn silence_covers(silence: &SilenceRecord, node: &NodeRecord) -> bool {
    silence.node_id.as_ref().is_some_and(|id| *id == node.node_id)
        || silence.tag.as_ref().is_some_and(|tag| node.all_tags().contains(tag))
}

/// The maintenance windows covering `node` between `from` and `to`.
pub fn covering(node: &NodeRecord, windows: &[(MaintenanceRecord, Window)], from: i64, to: i64) -> Vec<(i64, i64)> {
    windows.iter().filter(|(_, w)| w.scope.covers(node)).flat_map(|(_, w)| w.occurrences(from, to)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// 2026-11-29 (a Sunday) 00:00 UTC.
    const SUNDAY: i64 = 1_795_910_400_000;

    fn recurring(cron: &str, duration_secs: u64, zone: &str) -> MaintenanceRecord {
        MaintenanceRecord {
            cron: Some(cron.into()),
            duration_secs: Some(duration_secs),
            time_zone: Some(zone.into()),
            reason: "patching".into(),
            ..MaintenanceRecord::default()
        }
    }

    #[test]
    fn a_recurring_window_follows_its_time_zone() {
        // Sundays 02:00 to 04:00 in Berlin: 01:00 to 03:00 UTC in winter.
        let window = Window::parse(&recurring("0 2 * * 0", 7200, "Europe/Berlin")).unwrap();
        let cases = [
            (SUNDAY + H - 1, None),
            (SUNDAY + H, Some((SUNDAY + H, SUNDAY + 3 * H))),
            (SUNDAY + 3 * H - 1, Some((SUNDAY + H, SUNDAY + 3 * H))),
            (SUNDAY + 3 * H, None),
            (SUNDAY + 7 * 24 * H + 2 * H, Some((SUNDAY + 7 * 24 * H + H, SUNDAY + 7 * 24 * H + 3 * H))),
            (SUNDAY + 24 * H + 2 * H, None), // Monday
        ];
        for (now, expected) in cases {
            assert_eq!(window.active_at(now), expected, "at {}", hearth_wire::format_rfc3339(now));
        }
        assert_eq!(window.occurrences(SUNDAY, SUNDAY + 14 * 24 * H).len(), 2);
        assert_eq!(window.occurrences(SUNDAY + 2 * H, SUNDAY + 2 * H + 1), [(SUNDAY + H, SUNDAY + 3 * H)]);
        assert_eq!(window.next_start(SUNDAY + 2 * H), Some(SUNDAY + 7 * 24 * H + H));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        let cases = [
            (recurring("0 2 * *", 3600, "UTC"), "has 4 fields"),
            (recurring("0 2 * * 0 1", 3600, "UTC"), "has 6 fields"),
            (recurring("61 2 * * 0", 3600, "UTC"), "is not valid"),
            (recurring("0 2 * * 0", 3600, "Mars/Olympus"), "not a time zone"),
            (recurring("0 2 * * 0", 10, "UTC"), "from 60 to"),
            (MaintenanceRecord { start: Some(5), end: Some(5), ..Default::default() }, "an end after its start"),
            (MaintenanceRecord::default(), "either one-off"),
            (MaintenanceRecord { start: Some(5), ..recurring("0 2 * * 0", 3600, "UTC") }, "either one-off"),
        ];
        for (record, says) in cases {
            let err = Window::parse(&record).unwrap_err();
            assert!(err.contains(says), "{record:?}: {err}");
        }
    }

    #[test]
    fn holds_follow_scope_windows_first_then_silences() {
        let node = NodeRecord { node_id: "n1".into(), tags: vec!["rack".into()], ..Default::default() };
        let once = |ids: &[&str], tags: &[&str]| {
            let record = MaintenanceRecord {
                start: Some(0),
                end: Some(100),
                node_ids: ids.iter().map(|s| s.to_string()).collect(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                reason: "rewiring".into(),
                ..Default::default()
            };
            let window = Window::parse(&record).unwrap();
            (record, window)
        };
        let silence = |node_id: Option<&str>, tag: Option<&str>, until| SilenceRecord {
            node_id: node_id.map(Into::into),
            tag: tag.map(Into::into),
            until,
            reason: "known".into(),
            ..Default::default()
        };
        let maintenance = |until| Some(Hold { kind: HoldKind::Maintenance, until, reason: "rewiring".into() });
        let silenced = |until| Some(Hold { kind: HoldKind::Silenced, until, reason: "known".into() });
        assert_eq!(hold(&node, 50, &[once(&[], &[])], &[]), maintenance(100), "every node");
        assert_eq!(hold(&node, 50, &[once(&["n1"], &[])], &[]), maintenance(100));
        assert_eq!(hold(&node, 50, &[once(&["n2"], &[])], &[]), None);
        assert_eq!(hold(&node, 50, &[once(&[], &["rack"])], &[]), maintenance(100));
        assert_eq!(hold(&node, 50, &[once(&[], &["attic"])], &[]), None);
        assert_eq!(hold(&node, 100, &[once(&[], &[])], &[]), None, "the end is outside");
        assert_eq!(hold(&node, 50, &[], &[silence(Some("n1"), None, 80)]), silenced(80));
        assert_eq!(hold(&node, 50, &[], &[silence(None, Some("rack"), 80)]), silenced(80));
        assert_eq!(hold(&node, 80, &[], &[silence(None, Some("rack"), 80)]), None);
        assert_eq!(hold(&node, 50, &[], &[silence(Some("n2"), Some("attic"), 80)]), None);
        assert_eq!(hold(&node, 50, &[once(&[], &[])], &[silence(Some("n1"), None, 80)]), maintenance(100));
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Cron text comes from the network: odd patterns are refused or answered, never a
    /// panic, and a pattern that never matches (February 31st) answers at once.
    #[test]
    fn odd_patterns_never_panic_or_hang() {
        let odd = [
            "L L L L L",
            "#5 * * * *",
            "*/0 * * * *",
            "0-99999999999 * * * *",
            "5-1 * * * *",
            "1,,2 * * * *",
            "W * * * *",
            "0 0 31 2 *",
            "0 0 30 2 *",
            "* * * * 8",
            "? ? ? ? ?",
            "0 0 1W * *",
            "0 0 * * 5#6",
            "0 0 L-40 * *",
            "0 0 * * 7L",
            "@yearly 1 2 3 4",
            "-1 * * * *",
            "0 0 29 2 *",
            "0 0 * * MON#5",
        ];
        for pattern in odd {
            let record = MaintenanceRecord {
                cron: Some(pattern.into()),
                duration_secs: Some(3600),
                time_zone: Some("Europe/Berlin".into()),
                reason: "x".into(),
                ..MaintenanceRecord::default()
            };
            let started = std::time::Instant::now();
            if let Ok(window) = Window::parse(&record) {
                let _ = window.active_at(1_795_910_400_000);
                let _ = window.occurrences(1_795_910_400_000 - 90 * 86_400_000, 1_795_910_400_000);
                let _ = window.next_start(1_795_910_400_000);
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{pattern} took {:?}", started.elapsed());
        }
    }
}
