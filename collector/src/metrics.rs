//! Prometheus metrics: the collector's own counters, and every node as gauges.
//! Rendered in the text exposition format (version 0.0.4).

use crate::alerts::worker::Stats;
use crate::jobs::JobStatus;
use crate::model::{JobRecord, NodeRecord, Status};
use crate::uptime::Window;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    pub fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// What heartbeats got, by the answer's status.
const RESULTS: [&str; 5] = ["accepted", "invalid", "unauthorized", "forbidden", "failed"];

/// The request thread's own counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    heartbeats: [u64; RESULTS.len()],
    /// From reading a request to writing its answer.
    pub request_seconds: Histogram,
    pub batch_requests: Histogram,
    pub commit_seconds: Histogram,
    /// Flushes the flusher made, and the times a later commit's flush made one unneeded.
    flushes: [u64; 2],
    /// Sweeps of the deadline index finished.
    pub sweeps: u64,
    pub db_bytes: u64,
    /// The pages of each database, in bytes.
    pub db_used: Vec<(&'static str, u64)>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            heartbeats: [0; RESULTS.len()],
            request_seconds: Histogram::new(SECONDS),
            batch_requests: Histogram::new(BATCH),
            commit_seconds: Histogram::new(SECONDS),
            flushes: [0; 2],
            sweeps: 0,
            db_bytes: 0,
            db_used: Vec::new(),
        }
    }
}

/// The counters, shared by the request thread and the flusher; a panic elsewhere does
/// not stop them being read.
pub fn lock(metrics: &std::sync::Mutex<Metrics>) -> std::sync::MutexGuard<'_, Metrics> {
    metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    pub fn count_heartbeat(&mut self, status: u16) {
        let result = match status {
            200..=299 => 0,
            400 | 413 | 415 => 1,
            401 => 2,
            403 => 3,
            _ => 4,
        };
        self.heartbeats[result] += 1;
    }

    /// Counts the flusher's round: its own flush, or `covered` by a later commit's.
    pub fn count_flush(&mut self, covered: bool) {
        self.flushes[usize::from(covered)] += 1;
    }
}

/// Everything /metrics shows.
pub struct Snapshot<'a> {
    pub metrics: &'a Metrics,
    pub alerts: &'a Stats,
    pub alerts_pending: u64,
    /// Alerts dropped from the outbox because their node had too many waiting.
    pub alerts_dropped: u64,
}

/// `/metrics`'s per-node lines, gathered one node at a time (`add`), so that the whole
/// fleet is never held in memory at once.
#[derive(Default)]
pub struct Fleet {
    counts: [u64; STATUSES.len()],
    up: String,
    last_seen: String,
    /// Only the nodes the collector has declared offline: few, however large the fleet.
    down_since: String,
    /// Only the nodes a maintenance window or silence covers, or whose alerts one held back.
    held: String,
}

impl Fleet {
    /// Adds `node`; `covered` says whether a maintenance window or silence covers it now.
    pub fn add(&mut self, node: &NodeRecord, status: Status, covered: bool) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.counts[i] += 1;
        }
        self.up.push_str("hearth_node_up{");
        labels(&mut self.up, node);
        self.up.push_str(if matches!(status, Status::Online | Status::Late) { "} 1\n" } else { "} 0\n" });
        if let Some(seen) = node.last_seen {
            let id = escape(&node.node_id);
            let _ = writeln!(
                self.last_seen,
                "hearth_node_last_seen_timestamp_seconds{{node_id=\"{id}\"}} {}",
                Seconds(seen)
            );
        }
        // As its channels are told: not while a window or silence holds the news back.
        if let Some(since) = node.down_since.filter(|_| !node.offline_alert_held()) {
            self.down_since.push_str("hearth_node_down_since_timestamp_seconds{");
            labels(&mut self.down_since, node);
            let _ = writeln!(self.down_since, "}} {}", Seconds(since));
        }
        if covered || node.held_since.is_some() {
            self.held.push_str("hearth_node_alerts_held{");
            labels(&mut self.held, node);
            self.held.push_str("} 1\n");
        }
    }
}

/// `/metrics`: the collector's own metrics, the fleet by status, and per node
/// `hearth_node_up` and when it was last seen, and when it was declared down if it is. One line or two per
/// node, so that 100,000 nodes stay a scrape of a few megabytes. The per-node lines become
/// the answer in place: a scrape of 100,000 nodes held them twice, 40 MiB more at its peak.
pub fn render(s: &Snapshot, fleet: Fleet) -> String {
    let mut out = String::with_capacity(8192);
    counter(&mut out, "hearth_heartbeats_total", "Heartbeats received, by what the collector answered.");
    for (result, count) in RESULTS.iter().zip(s.metrics.heartbeats) {
        let _ = writeln!(out, "hearth_heartbeats_total{{result=\"{result}\"}} {count}");
    }
    let m = s.metrics;
    m.request_seconds.render(
        &mut out,
        "hearth_request_duration_seconds",
        "Time from reading a request to answering it, commit and flush included.",
    );
    m.batch_requests.render(&mut out, "hearth_commit_batch_requests", "Requests carried by one group commit.");
    m.commit_seconds.render(&mut out, "hearth_commit_duration_seconds", "Time to apply and commit one batch.");
    counter(
        &mut out,
        "hearth_flushes_total",
        "Rounds of the flusher: `own` flushed to disk itself, `covered` found a later commit had already flushed its batches.",
    );
    for (how, count) in ["own", "covered"].iter().zip(m.flushes) {
        let _ = writeln!(out, "hearth_flushes_total{{how=\"{how}\"}} {count}");
    }
    counter(&mut out, "hearth_sweeps_total", "Sweeps of the deadline index finished (about one a second).");
    let _ = writeln!(out, "hearth_sweeps_total {}", m.sweeps);
    gauge(&mut out, "hearth_db_size_bytes", "Size of the LMDB data file.");
    let _ = writeln!(out, "hearth_db_size_bytes {}", m.db_bytes);
    gauge(&mut out, "hearth_db_used_bytes", "Bytes of the LMDB pages each database uses.");
    for (database, bytes) in &m.db_used {
        let _ = writeln!(out, "hearth_db_used_bytes{{database=\"{database}\"}} {bytes}");
    }
    counter(&mut out, "hearth_alerts_sent_total", "Alert deliveries a channel accepted.");
    let _ = writeln!(out, "hearth_alerts_sent_total {}", s.alerts.sent.load(Ordering::Relaxed));
    counter(
        &mut out,
        "hearth_alert_attempts_failed_total",
        "Alert delivery attempts that failed (and will be retried).",
    );
    let _ = writeln!(out, "hearth_alert_attempts_failed_total {}", s.alerts.failed_attempts.load(Ordering::Relaxed));
    counter(&mut out, "hearth_alerts_failed_total", "Alert deliveries given up after every retry.");
    let _ = writeln!(out, "hearth_alerts_failed_total {}", s.alerts.given_up.load(Ordering::Relaxed));
    gauge(&mut out, "hearth_alerts_pending", "Alerts waiting in the outbox for at least one channel.");
    let _ = writeln!(out, "hearth_alerts_pending {}", s.alerts_pending);
    counter(
        &mut out,
        "hearth_alerts_dropped_total",
        "Alerts dropped unsent because their node already had too many waiting in the outbox.",
    );
    let _ = writeln!(out, "hearth_alerts_dropped_total {}", s.alerts_dropped);

    gauge(&mut out, "hearth_nodes", "Nodes, by status.");
    for (status, count) in STATUSES.iter().zip(fleet.counts) {
        let _ = writeln!(out, "hearth_nodes{{status=\"{}\"}} {count}", status.as_str());
    }
    gauge(&mut out, "hearth_node_up", "1 if the node is online or late, 0 if not.");
    let (mut up, last_seen) = (fleet.up, fleet.last_seen);
    up.insert_str(0, &out);
    let mut out = up;
    out.reserve(last_seen.len() + fleet.down_since.len() + fleet.held.len() + 1024);
    gauge(
        &mut out,
        "hearth_node_last_seen_timestamp_seconds",
        "When the node's last heartbeat arrived, by the collector's clock.",
    );
    out.push_str(&last_seen);
    gauge(
        &mut out,
        "hearth_node_down_since_timestamp_seconds",
        "When the collector declared the node offline (or never heard from), as its channels are told; only such nodes.",
    );
    out.push_str(&fleet.down_since);
    gauge(&mut out, "hearth_node_alerts_held", HELD_HELP);
    out.push_str(&fleet.held);
    out
}

/// `/metrics`'s per-job lines: whether each job is up, when it last succeeded and how long
/// its last run took.
#[derive(Default)]
pub struct Jobs {
    up: String,
    last_success: String,
    duration: String,
    /// Only the jobs the collector has declared down or failed.
    down_since: String,
}

impl Jobs {
    pub fn add(&mut self, job: &JobRecord, status: JobStatus) {
        let labels = format!("job_id=\"{}\",job=\"{}\"", escape(&job.id), escape(&job.name));
        let up = u8::from(!matches!(status, JobStatus::Down));
        let _ = writeln!(self.up, "hearth_job_up{{{labels}}} {up}");
        if let Some(at) = job.last_success {
            let _ =
                writeln!(self.last_success, "hearth_job_last_success_timestamp_seconds{{{labels}}} {}", Seconds(at));
        }
        if let Some(at) = job.down_since {
            let _ = writeln!(self.down_since, "hearth_job_down_since_timestamp_seconds{{{labels}}} {}", Seconds(at));
        }
        if let Some(ms) = job.last_duration_ms {
            let _ = writeln!(self.duration, "hearth_job_last_duration_seconds{{{labels}}} {}", Seconds(ms));
        }
    }

    pub fn render(&self, out: &mut String) {
        gauge(out, "hearth_job_up", "1 if the job is not down (new, up, started, in its grace or paused), 0 if down.");
        out.push_str(&self.up);
        gauge(out, "hearth_job_last_success_timestamp_seconds", "When the job last pinged success.");
        out.push_str(&self.last_success);
        gauge(out, "hearth_job_last_duration_seconds", "How long the job's last run took, from its start ping.");
        out.push_str(&self.duration);
        gauge(
            out,
            "hearth_job_down_since_timestamp_seconds",
            "When the collector declared the job late or failed, as its channels are told; only such jobs.",
        );
        out.push_str(&self.down_since);
    }
}

/// What `/metrics/nodes` says of one node, kept small: 100,000 of them take under 30 MiB,
/// where the text they become takes over two hundred. A missing value is NaN, which no
/// heartbeat can carry (JSON has none).
pub struct NodeSeries {
    labels: Box<str>,
    status: Status,
    facts: [f64; FACTS.len()],
    /// Uptime over each of `uptime::Window::ALL`, set by `with_uptime`.
    uptime: [f32; 4],
    /// Each check on a line of its own: `1` if it passed (else `0`), then its escaped name.
    checks: Box<str>,
    /// Whether a maintenance window or silence covers the node, or holds back what it made
    /// of it: `hearth_node_alerts_held` here too, in the same scrape as its checks.
    held: bool,
}

type Fact = fn(&hearth_wire::Heartbeat) -> Option<f64>;

/// The per-node gauges taken from the last heartbeat: name, help, and how to read it.
const FACTS: [(&str, &str, Fact); 8] = [
    ("hearth_node_load1", "Load average over 1 minute.", |h| Some(*h.load.as_ref()?.first()?)),
    ("hearth_node_load5", "Load average over 5 minutes.", |h| Some(*h.load.as_ref()?.get(1)?)),
    ("hearth_node_load15", "Load average over 15 minutes.", |h| Some(*h.load.as_ref()?.get(2)?)),
    ("hearth_node_memory_bytes", "Total memory.", |h| h.memory_mb.map(|v| v as f64 * 1_048_576.0)),
    ("hearth_node_memory_available_bytes", "Available memory.", |h| h.mem_available_mb.map(|v| v as f64 * 1_048_576.0)),
    ("hearth_node_disk_bytes", "Size of the root filesystem.", |h| h.disk_gb.map(|v| v as f64 * 1_073_741_824.0)),
    ("hearth_node_disk_free_bytes", "Free space on the root filesystem.", |h| {
        h.disk_free_gb.map(|v| v as f64 * 1_073_741_824.0)
    }),
    ("hearth_node_uptime_seconds", "Seconds since the node booted.", |h| h.uptime_secs.map(|v| v as f64)),
];

impl NodeSeries {
    /// The node's uptime over each of `uptime::Window::ALL`.
    pub fn with_uptime(mut self, ratios: [Option<f64>; 4]) -> NodeSeries {
        self.uptime = ratios.map(|r| r.map_or(f32::NAN, |r| r as f32));
        self
    }

    /// Whether a window or silence covers the node now (see `NodeSeries::held`).
    pub fn covered(mut self, covered: bool) -> NodeSeries {
        self.held |= covered;
        self
    }

    /// About how many bytes this takes in memory.
    pub fn size(&self) -> usize {
        std::mem::size_of::<NodeSeries>() + self.labels.len() + self.checks.len()
    }

    pub fn of(node: &NodeRecord, now_ms: i64, grace_ms: u64) -> NodeSeries {
        let mut labels = String::new();
        self::labels(&mut labels, node);
        let hb = node.heartbeat.as_ref();
        let mut checks = String::new();
        for check in hb.iter().flat_map(|h| h.checks.iter().flatten()) {
            let _ = writeln!(checks, "{}{}", u8::from(check.ok), escape(&check.name));
        }
        NodeSeries {
            labels: labels.into_boxed_str(),
            status: node.status(now_ms, grace_ms),
            facts: FACTS.map(|(_, _, fact)| hb.and_then(fact).unwrap_or(f64::NAN)),
            uptime: [f32::NAN; 4],
            checks: checks.into_boxed_str(),
            held: node.held_since.is_some(),
        }
    }
}

/// How many nodes one piece of `/metrics/nodes` holds.
const NODES_PER_PIECE: usize = 500;

/// `/metrics/nodes` (each node's status, facts and checks) in Prometheus text, a piece
/// at a time: each metric family whole and in turn, as the format requires, a few
/// hundred nodes a piece, so the answer is never in memory whole.
pub fn node_pieces(nodes: Vec<NodeSeries>) -> impl Iterator<Item = Vec<u8>> + Send {
    // Families: 0 status, 1..=8 the facts, 9 uptime, 10 checks, 11 held.
    const UPTIME: usize = FACTS.len() + 1;
    const CHECKS: usize = UPTIME + 1;
    const HELD: usize = CHECKS + 1;
    let (mut family, mut from) = (0usize, 0usize);
    std::iter::from_fn(move || {
        if family > HELD {
            return None;
        }
        let mut out = String::with_capacity(NODES_PER_PIECE * 160);
        if from == 0 {
            match family {
                0 => gauge(&mut out, "hearth_node_status", "1 for the node's current status, 0 for the others."),
                f if f <= FACTS.len() => gauge(&mut out, FACTS[f - 1].0, FACTS[f - 1].1),
                UPTIME => gauge(
                    &mut out,
                    "hearth_node_uptime_ratio",
                    "Share of the window the node was up (stops, maintenance and time before its first heartbeat left out).",
                ),
                CHECKS => gauge(
                    &mut out,
                    "hearth_node_check_ok",
                    "1 if the node's check passed in its last heartbeat, 0 if not.",
                ),
                _ => gauge(&mut out, "hearth_node_alerts_held", HELD_HELP),
            }
        }
        let to = (from + NODES_PER_PIECE).min(nodes.len());
        for node in &nodes[from..to] {
            let l = &node.labels;
            match family {
                0 => {
                    for candidate in STATUSES {
                        let on = u8::from(candidate == node.status);
                        let _ = writeln!(out, "hearth_node_status{{{l},status=\"{}\"}} {on}", candidate.as_str());
                    }
                }
                f if f <= FACTS.len() => {
                    let value = node.facts[f - 1];
                    if !value.is_nan() {
                        let _ = writeln!(out, "{}{{{l}}} {value}", FACTS[f - 1].0);
                    }
                }
                UPTIME => {
                    for (window, ratio) in Window::ALL.iter().zip(node.uptime) {
                        if !ratio.is_nan() {
                            let _ =
                                writeln!(out, "hearth_node_uptime_ratio{{{l},window=\"{}\"}} {ratio}", window.label());
                        }
                    }
                }
                CHECKS => {
                    for line in node.checks.split_terminator('\n') {
                        let (ok, check) = line.split_at(1);
                        let _ = writeln!(out, "hearth_node_check_ok{{{l},check=\"{check}\"}} {ok}");
                    }
                }
                _ if node.held => {
                    let _ = writeln!(out, "hearth_node_alerts_held{{{l}}} 1");
                }
                _ => {}
            }
        }
        if to == nodes.len() {
            (family, from) = (family + 1, 0);
        } else {
            from = to;
        }
        Some(out.into_bytes())
    })
}

const HELD_HELP: &str =
    "1 while a maintenance window or silence covers the node, or holds back alerts about it; only such nodes.";

const STATUSES: [Status; 5] = [Status::Pending, Status::Online, Status::Late, Status::Offline, Status::Stopped];

/// Milliseconds as Prometheus's seconds, to the millisecond: `1700000000.123`.
struct Seconds(i64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0.div_euclid(1000), self.0.rem_euclid(1000))
    }
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn counter(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

/// `node_id="…",name="…",hostname="…"`, appended to `out`.
fn labels(out: &mut String, node: &NodeRecord) {
    for (i, (label, value)) in
        [("node_id", &node.node_id), ("name", &node.name), ("hostname", &node.hostname)].into_iter().enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        out.push_str(&escape(value));
        out.push('"');
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_pieces_keep_each_family_whole_and_in_turn() {
        let node = |i: usize| NodeRecord {
            node_id: format!("n{i:04}"),
            last_seen: Some(0),
            heartbeat: Some(hearth_wire::Heartbeat {
                load: Some(vec![1.0, 2.0, 3.0]),
                checks: Some(vec![hearth_wire::Check { name: "disk".into(), ok: i % 2 == 0, detail: String::new() }]),
                ..Default::default()
            }),
            ..NodeRecord::default()
        };
        let mut series: Vec<NodeSeries> = (0..1200).map(|i| NodeSeries::of(&node(i), 0, 90_000)).collect();
        let mut odd = node(1200);
        let checks = ["say \"hi\"\nback\\", "", "last"].map(|name| hearth_wire::Check {
            name: name.into(),
            ok: true,
            detail: String::new(),
        });
        odd.heartbeat.as_mut().unwrap().checks = Some(checks.into());
        series.push(NodeSeries::of(&odd, 0, 90_000).with_uptime([Some(0.5), None, Some(1.0), None]).covered(true));
        let pieces: Vec<String> = node_pieces(series).map(|p| String::from_utf8(p).unwrap()).collect();
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        let text = pieces.concat();
        // Every family once, whole: its samples all follow its TYPE line, before the next family's.
        let mut seen = Vec::new();
        for line in text.lines() {
            let family = match line.strip_prefix("# TYPE ") {
                Some(rest) => rest.split(' ').next().unwrap().to_owned(),
                None if line.starts_with('#') => continue,
                None => line.split('{').next().unwrap().to_owned(),
            };
            if seen.last() != Some(&family) {
                assert!(!seen.contains(&family), "{family} comes twice");
                seen.push(family);
            }
        }
        assert_eq!(text.matches("hearth_node_status{").count(), 1201 * 5);
        assert_eq!(text.matches("hearth_node_load15{").count(), 1201);
        assert_eq!(text.matches("hearth_node_memory_bytes{").count(), 0, "absent facts are left out");
        assert_eq!(text.matches("check=\"disk\"} 1").count(), 600);
        let held: Vec<&str> = text.lines().filter(|l| l.starts_with("hearth_node_alerts_held{")).collect();
        assert_eq!(held, [r#"hearth_node_alerts_held{node_id="n1200",name="",hostname=""} 1"#], "only the covered one");
        // A node's checks come out one each, names escaped, whatever they hold.
        let odd: Vec<&str> = text.lines().filter(|l| l.contains("node_id=\"n1200\"")).collect();
        let checks: Vec<&str> = odd.iter().filter(|l| l.starts_with("hearth_node_check_ok")).copied().collect();
        assert_eq!(checks.len(), 3, "{odd:#?}");
        assert!(checks[0].ends_with(r#",check="say \"hi\"\nback\\"} 1"#), "{}", checks[0]);
        assert!(checks[1].ends_with(r#",check=""} 1"#) && checks[2].ends_with(r#",check="last"} 1"#), "{checks:?}");
        let uptime: Vec<&str> = odd.iter().filter(|l| l.starts_with("hearth_node_uptime_ratio")).copied().collect();
        assert_eq!(uptime.len(), 2, "absent ratios are left out: {uptime:?}");
        assert!(uptime[0].ends_with("} 0.5") && uptime[1].ends_with("} 1"), "{uptime:?}");
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(
            out.contains("x_bucket{le=\"1\"} 1\nx_bucket{le=\"2\"} 2\nx_bucket{le=\"+Inf\"} 3\nx_sum 5\nx_count 3"),
            "{out}"
        );
    }

    /// `/metrics` says a node is down only as its channels are told: not while a window or
    /// silence holds its offline alert back; and it marks the nodes held.
    #[test]
    fn a_held_outage_is_not_down_yet_and_held_nodes_are_marked() {
        let node = |id: &str, down_since, held_since| NodeRecord {
            node_id: id.into(),
            down_since,
            held_since,
            last_seen: Some(0),
            ..NodeRecord::default()
        };
        let mut fleet = Fleet::default();
        fleet.add(&node("told", Some(100), None), Status::Offline, false);
        fleet.add(&node("held", Some(200), Some(150)), Status::Offline, true);
        fleet.add(&node("told-then-held", Some(100), Some(150)), Status::Offline, true);
        fleet.add(&node("check-held", None, Some(150)), Status::Online, false);
        fleet.add(&node("covered", None, None), Status::Online, true);
        let text = render(
            &Snapshot { metrics: &Metrics::default(), alerts: &Stats::default(), alerts_pending: 0, alerts_dropped: 0 },
            fleet,
        );
        let down: Vec<&str> =
            text.lines().filter(|l| l.starts_with("hearth_node_down_since_timestamp_seconds{")).collect();
        assert_eq!(down.len(), 2, "{down:?}");
        assert!(down[0].contains("\"told\"") && down[1].contains("\"told-then-held\""), "{down:?}");
        let held: Vec<&str> = text.lines().filter(|l| l.starts_with("hearth_node_alerts_held{")).collect();
        assert_eq!(held.len(), 4, "{held:?}");
        assert!(!held.iter().any(|l| l.contains("\"told\"")), "{held:?}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
