//! Uptime: the share of a window a node was up, from its log of spans (down, stopped,
//! in maintenance). Pure: handed the node, its spans and the time.
//!
//! What is not held against a node: the time before its first heartbeat, a clean stop
//! until it comes back, and an outage inside a maintenance window. Those spans leave the
//! window altogether; a node up during maintenance counts as up. A node that is late but
//! not yet declared offline counts as up, as it does for alerts.

use crate::model::{NodeRecord, Span, SpanCause};

pub const DAY_MS: i64 = 86_400_000;

/// How long spans are kept, and how many days the per-day series covers.
pub const KEPT_DAYS: i64 = 90;
pub const KEPT_MS: i64 = KEPT_DAYS * DAY_MS;

/// The most spans kept per node, however often it flaps: past it the oldest is dropped.
/// A span is a key (node id and start) and 9 bytes, about 120 bytes in LMDB's pages as
/// the oldest are trimmed: a node at the cap holds about 24 KiB; one that never fails or
/// stops holds nothing (`store::spans` tests both).
pub const SPANS_PER_NODE: usize = 200;

/// The windows uptime is reported over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day,
    Week,
    Month,
    Quarter,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Day, Window::Week, Window::Month, Window::Quarter];

    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
            Window::Quarter => "90d",
        }
    }

    pub fn ms(self) -> i64 {
        match self {
            Window::Day => DAY_MS,
            Window::Week => 7 * DAY_MS,
            Window::Month => 30 * DAY_MS,
            Window::Quarter => KEPT_MS,
        }
    }
}

/// The span a node is in now, not yet in its log: down since `down_from` while declared
/// offline, or stopped since its stopping heartbeat. Taken with `end = now` when the next
/// heartbeat closes it.
pub fn ongoing(node: &NodeRecord, now: i64) -> Option<Span> {
    if let (Some(from), Some(_)) = (node.down_from, node.down_since) {
        return Some(Span { start: from.min(now), end: now, cause: SpanCause::Offline });
    }
    match node.last_seen {
        Some(seen) if node.is_stopped() => Some(Span { start: seen.min(now), end: now, cause: SpanCause::Stopped }),
        _ => None,
    }
}

/// When a node's uptime starts counting: its first heartbeat (for a node stored before
/// that was kept, its enrolment); `None` for a node never heard from.
pub fn counted_from(node: &NodeRecord) -> Option<i64> {
    node.last_seen?;
    Some(node.first_seen.unwrap_or(node.enrolled_at))
}

/// The share of `[from, to)` the node was up, out of the time that counts; `None` when
/// none of it counts (never heard from, or stopped or in maintenance throughout).
pub fn ratio(counted_from: Option<i64>, spans: &[Span], from: i64, to: i64) -> Option<f64> {
    let from = from.max(counted_from?);
    if to <= from {
        return None;
    }
    let (mut down, mut excused) = (0, 0);
    for span in spans {
        let overlap = (span.end.min(to) - span.start.max(from)).max(0);
        match span.cause {
            SpanCause::Offline => down += overlap,
            SpanCause::Stopped | SpanCause::Maintenance => excused += overlap,
        }
    }
    let counted = to - from - excused;
    (counted > 0).then(|| (1.0 - down as f64 / counted as f64).clamp(0.0, 1.0))
}

/// The ratio for each of the last [`KEPT_DAYS`] days (UTC), oldest first; today's so far.
pub fn daily(counted_from: Option<i64>, spans: &[Span], now: i64) -> Vec<Option<f64>> {
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    (0..KEPT_DAYS)
        .map(|back| {
            let start = today - (KEPT_DAYS - 1 - back) * DAY_MS;
            ratio(counted_from, spans, start, (start + DAY_MS).min(now))
        })
        .collect()
}

/// Splits an outage by the maintenance windows it overlaps (`maintenance`: start and
/// end, in any order, possibly overlapping): what fell inside them is `Maintenance`, and
/// not held against the node. Other spans pass unchanged.
pub fn split(span: Span, maintenance: &[(i64, i64)]) -> Vec<Span> {
    if span.cause != SpanCause::Offline {
        return vec![span];
    }
    let mut inside: Vec<(i64, i64)> =
        maintenance.iter().map(|&(s, e)| (s.max(span.start), e.min(span.end))).filter(|(s, e)| s < e).collect();
    inside.sort_unstable();
    let mut out = Vec::new();
    let mut at = span.start;
    for (s, e) in inside {
        if e <= at {
            continue;
        }
        let s = s.max(at);
        if s > at {
            out.push(Span { start: at, end: s, cause: SpanCause::Offline });
        }
        out.push(Span { start: s, end: e, cause: SpanCause::Maintenance });
        at = e;
    }
    if at < span.end {
        out.push(Span { start: at, end: span.end, cause: SpanCause::Offline });
    }
    // Touching maintenance pieces (overlapping windows) read as one.
    out.dedup_by(|next, prev| {
        let joins = prev.cause == next.cause && prev.end == next.start;
        if joins {
            prev.end = next.end;
        }
        joins
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpanCause::{Maintenance, Offline, Stopped};

    const M: i64 = 60_000;

    fn span(start: i64, end: i64, cause: SpanCause) -> Span {
        Span { start, end, cause }
    }

    #[test]
    fn ratios_leave_out_what_is_not_the_nodes_fault() {
        let h = 60 * M;
        type Case<'a> = (Option<i64>, &'a [Span], i64, i64, Option<f64>);
        let cases: &[Case] = &[
            (None, &[], 0, DAY_MS, None),         // never heard from
            (Some(0), &[], 0, DAY_MS, Some(1.0)), // never failed
            (Some(0), &[span(0, 10 * M, Offline)], 0, 100 * M, Some(0.9)),
            (Some(50 * M), &[], 0, 100 * M, Some(1.0)), // before the first heartbeat
            (Some(50 * M), &[span(50 * M, 60 * M, Offline)], 0, 100 * M, Some(0.8)),
            (Some(0), &[span(0, 50 * M, Stopped), span(50 * M, 60 * M, Offline)], 0, 100 * M, Some(0.8)),
            (Some(0), &[span(10 * M, 20 * M, Maintenance)], 0, 100 * M, Some(1.0)),
            (Some(0), &[span(0, 100 * M, Stopped)], 0, 100 * M, None),
            (Some(0), &[span(-h, 10 * M, Offline)], 0, 100 * M, Some(0.9)), // only the part inside counts
            (Some(0), &[span(0, 200 * M, Offline)], 0, 100 * M, Some(0.0)),
        ];
        for (first, spans, from, to, expected) in cases {
            let got = ratio(*first, spans, *from, *to).map(|r| (r * 1e6).round() / 1e6);
            assert_eq!(got, *expected, "first={first:?} spans={spans:?} [{from}, {to})");
        }
    }

    #[test]
    fn an_outage_splits_around_maintenance() {
        type Case<'a> = (&'a [(i64, i64)], &'a [Span]);
        let cases: &[Case] = &[
            (&[], &[span(10, 50, Offline)]),
            (&[(0, 100)], &[span(10, 50, Maintenance)]),
            (&[(0, 30)], &[span(10, 30, Maintenance), span(30, 50, Offline)]),
            (&[(20, 30), (25, 40)], &[span(10, 20, Offline), span(20, 40, Maintenance), span(40, 50, Offline)]),
            (&[(40, 60), (0, 15)], &[span(10, 15, Maintenance), span(15, 40, Offline), span(40, 50, Maintenance)]),
            (&[(60, 70)], &[span(10, 50, Offline)]),
        ];
        for (windows, expected) in cases {
            assert_eq!(split(span(10, 50, Offline), windows), *expected, "{windows:?}");
        }
        assert_eq!(split(span(10, 50, Stopped), &[(0, 100)]), [span(10, 50, Stopped)]);
    }

    #[test]
    fn days_are_utc_days_oldest_first() {
        let now = 100 * DAY_MS + 12 * 60 * M; // noon
        let spans =
            [span(100 * DAY_MS, 100 * DAY_MS + 6 * 60 * M, Offline), span(99 * DAY_MS, 99 * DAY_MS + 1, Offline)];
        let days = daily(Some(95 * DAY_MS), &spans, now);
        assert_eq!(days.len(), KEPT_DAYS as usize);
        assert_eq!(days[89], Some(0.5), "today, half of the morning so far");
        assert!(days[88].is_some_and(|r| r < 1.0 && r > 0.999));
        assert_eq!(days[84], Some(1.0));
        assert_eq!(days[83], None, "before the first heartbeat");
    }

    #[test]
    fn the_ongoing_span_comes_from_the_node() {
        let down = NodeRecord { last_seen: Some(0), down_from: Some(30), down_since: Some(70), ..Default::default() };
        assert_eq!(ongoing(&down, 100), Some(span(30, 100, Offline)));
        let stopping = hearth_wire::Heartbeat { state: Some(hearth_wire::State::Stopping), ..Default::default() };
        let stopped = NodeRecord { last_seen: Some(5), heartbeat: Some(stopping), ..Default::default() };
        assert_eq!(ongoing(&stopped, 100), Some(span(5, 100, Stopped)));
        assert_eq!(ongoing(&NodeRecord { last_seen: Some(5), ..Default::default() }, 100), None);
    }
}
