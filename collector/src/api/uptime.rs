//! Uptime for people: `GET /api/nodes/{id}/uptime`, and the ratios the node list and
//! `/metrics/nodes` carry.

use super::{fleet::no_such_node, Context, Handled, Reply};
use crate::alerts::Holds;
use crate::model::{NodeRecord, Span};
use crate::store::{self, ReadTxn, Txn};
use crate::uptime::{self, Window, DAY_MS};
use hearth_wire::format_rfc3339;
use miniserde::Serialize;

/// The node's spans, oldest first, with the one it is in now (an outage split where a
/// maintenance window covers it).
pub(crate) fn spans<T: ReadTxn>(
    txn: &Txn<T>,
    node: &NodeRecord,
    now: i64,
    holds: &Holds,
) -> Result<Vec<Span>, store::Error> {
    let mut spans = txn.spans(&node.node_id)?;
    if let Some(span) = uptime::ongoing(node, now) {
        let windows = holds.covering(node, span.start, span.end);
        spans.extend(uptime::split(span, &windows));
    }
    Ok(spans)
}

/// The node's uptime over `window`, up to `now`.
pub(crate) fn ratio_over(node: &NodeRecord, spans: &[Span], window: Window, now: i64) -> Option<f64> {
    uptime::ratio(uptime::counted_from(node), spans, now - window.ms(), now)
}

#[derive(Serialize)]
struct Ratios {
    #[serde(rename = "24h")]
    day: Option<f64>,
    #[serde(rename = "7d")]
    week: Option<f64>,
    #[serde(rename = "30d")]
    month: Option<f64>,
    #[serde(rename = "90d")]
    quarter: Option<f64>,
}

#[derive(Serialize)]
struct SpanView {
    start: String,
    /// `null` while it goes on.
    end: Option<String>,
    duration_secs: i64,
    /// `offline`, `stopped` or `maintenance`.
    cause: &'static str,
}

#[derive(Serialize)]
struct Day {
    /// The UTC day, `YYYY-MM-DD`.
    date: String,
    /// `null` for a day none of which counts (before the first heartbeat, stopped throughout).
    ratio: Option<f64>,
}

#[derive(Serialize)]
struct UptimeView {
    node_id: String,
    ratios: Ratios,
    /// Newest first: every span of the last 90 days the node was not up.
    outages: Vec<SpanView>,
    /// The last 90 days, oldest first; today's so far.
    days: Vec<Day>,
    /// When maintenance windows covered the node over the last 7 days and the next one, up or down.
    maintenance: Vec<Interval>,
}

#[derive(Serialize)]
struct Interval {
    start: String,
    end: String,
}

/// `GET /api/nodes/{id}/uptime`.
pub(super) fn node_uptime<T: ReadTxn>(id: &str, txn: &Txn<T>, ctx: &Context) -> Handled {
    let id = crate::model::node_key(id);
    let Some(node) = txn.node(&id)? else { return Err(no_such_node(&id).into()) };
    let now = ctx.now_ms;
    let holds = Holds::load(txn)?;
    let spans = spans(txn, &node, now, &holds)?;
    let ratio = |w| ratio_over(&node, &spans, w, now);
    let ratios = Ratios {
        day: ratio(Window::Day),
        week: ratio(Window::Week),
        month: ratio(Window::Month),
        quarter: ratio(Window::Quarter),
    };
    let outages = spans
        .iter()
        .rev()
        .filter(|s| s.end > now - Window::Quarter.ms())
        .map(|s| SpanView {
            start: format_rfc3339(s.start),
            end: (s.end < now).then(|| format_rfc3339(s.end)),
            duration_secs: (s.end - s.start) / 1000,
            cause: s.cause.as_str(),
        })
        .collect();
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let series = uptime::daily(uptime::counted_from(&node), &spans, now);
    let first_day = today - (series.len() as i64 - 1) * DAY_MS;
    let days = series
        .into_iter()
        .enumerate()
        .map(|(i, ratio)| Day { date: format_rfc3339(first_day + i as i64 * DAY_MS)[..10].to_owned(), ratio })
        .collect();
    let maintenance = holds
        .covering(&node, now - Window::Week.ms(), now + DAY_MS)
        .into_iter()
        .map(|(start, end)| Interval { start: format_rfc3339(start), end: format_rfc3339(end) })
        .collect();
    Ok(Reply::json(200, &UptimeView { node_id: id, ratios, outages, days, maintenance }))
}
