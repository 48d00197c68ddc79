//! Scale: 100,000 enrolled nodes stored, each with a full heartbeat. Store size per node,
//! the two whole-fleet reads (`GET /api/nodes`, `/metrics`), memory, and a cold start.

use super::dashboard::{Dashboard, Walk};
use super::load::{self, Shape};
use super::{mib, seed, Target, Usage};
use crate::util::{self, Collector, MemoryLimit};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: usize = 100_000;
const TRIES: usize = 5;

pub fn report(out: &Path) -> Result<(String, Vec<Target>), String> {
    let bin = util::root().join("target/release/hearth-collector");
    let data_dir = out.join("scale");
    let collector = Collector::start(&bin, &data_dir, &["--mints-per-hour", "1000000"])?;
    let key = seed::api_key(&collector)?;
    println!("enrolling {NODES} nodes, each with one heartbeat");
    let seed_rate = seed::enrol(&collector, &key, NODES, Some(INTERVAL_SECS), &out.join("nodes-100k.txt"))?;
    let bytes = std::fs::metadata(data_dir.join("data.mdb")).map_err(|e| e.to_string())?.len();
    let per_node = bytes as f64 / NODES as f64;
    let auth = format!("Bearer {key}");
    std::thread::sleep(Duration::from_millis(1500)); // the collector refreshes its store figures each second
    let (_, text) = seed::request(collector.addr(), "GET", "/metrics", "", "").ok_or("GET /metrics: no answer")?;
    let used: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("hearth_db_used_bytes{database=\"")?;
            let (name, value) = rest.split_once("\"} ")?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .filter(|(_, bytes)| *bytes > 4096.0)
        .collect();
    let nodes = timed(collector.addr(), "/api/nodes", &auth)?;
    let (walk, _) = super::dashboard::walk(collector.addr(), &auth, None)?;
    let metrics = timed(collector.addr(), "/metrics", "")?;
    let node_metrics = timed(collector.addr(), "/metrics/nodes", "")?;
    let usage = Usage::of(collector.pid());
    drop(collector);

    let started = Instant::now();
    let collector = Collector::start(&bin, &data_dir, &["--mints-per-hour", "1000000"])?;
    let listening = started.elapsed();
    while seed::request(collector.addr(), "GET", "/healthz", "", "").is_none_or(|(s, _)| s != 200) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first_answer = started.elapsed();
    let mixed = mixed_load(&collector, &key, &out.join("nodes-100k.txt"))?;

    let mut text = format!(
        "## Scale: {NODES} nodes\n\n\
         {NODES} nodes enrolled over the API, each with one full heartbeat ({seed_rate:.0} nodes/s: mint, enrol, beat). \
         Latencies are {TRIES} requests one after another on new connections, from the request's first byte to the answer's last.\n\n\
         | figure | value |\n|---|---:|\n\
         | LMDB file (`data.mdb`) | {:.1} MiB, **{per_node:.0} bytes per node** |\n\
         | `GET /api/nodes` (admin API key; the first page, 1,000 nodes) | median {:.0} ms, max {:.0} ms, {:.1} MiB answered |\n\
         | every page of `GET /api/nodes?limit=5000`, one after another | {:.0} ms in all, {} pages |\n\
         | `GET /metrics` (loopback) | median {:.0} ms, max {:.0} ms, {:.1} MiB answered |\n\
         | `GET /metrics/nodes` (loopback; every node's status and facts) | median {:.0} ms, max {:.0} ms, {:.1} MiB answered |\n\
         | collector RSS after those | {:.1} MiB (peak {:.1} MiB) |\n\
         | cold start: process start to listening | {:.0} ms |\n\
         | cold start: process start to the first answer | {:.0} ms |\n\n",
        bytes as f64 / 1_048_576.0,
        nodes.median_ms,
        nodes.max_ms,
        nodes.bytes as f64 / 1_048_576.0,
        walk.millis,
        walk.pages,
        metrics.median_ms,
        metrics.max_ms,
        metrics.bytes as f64 / 1_048_576.0,
        node_metrics.median_ms,
        node_metrics.max_ms,
        node_metrics.bytes as f64 / 1_048_576.0,
        mib(usage.rss_kib),
        mib(usage.peak_rss_kib),
        listening.as_secs_f64() * 1000.0,
        first_answer.as_secs_f64() * 1000.0,
    );
    let _ = writeln!(text, "Where the store's bytes go, per node (`hearth_db_used_bytes`, databases over one page):\n");
    let _ = writeln!(text, "| database | bytes per node |\n|---|---:|");
    for (name, bytes) in &used {
        let _ = writeln!(text, "| {name} | {:.0} |", bytes / NODES as f64);
    }
    let _ = writeln!(text);
    // What stays per node: not the spent enrolment tokens (dropped a week after use) nor
    // the audit log (the newest 10,000 entries, whatever the fleet's size).
    let lasting: f64 =
        used.iter().filter(|(db, _)| !["enroll_tokens", "audit"].contains(&db.as_str())).map(|(_, b)| b).sum();
    let lasting = lasting / NODES as f64;
    let _ = writeln!(
        text,
        "Per node, what stays (every database but the spent enrolment tokens, dropped a week after use, and the audit \
         log, capped at 10,000 entries): **{lasting:.0} bytes**. Right after enrolling all {NODES} at once, the whole file: {per_node:.0} bytes a node.\n"
    );
    let _ = writeln!(text, "{}", mixed.text);
    let mut targets = vec![
        Target {
            what: "≤ 1 KiB of store per node",
            measured: format!("{lasting:.0} bytes a node lasting; {per_node:.0} with a week's spent enrolment tokens"),
            met: lasting <= 1024.0,
        },
        Target {
            what: "`GET /api/nodes` ≤ 150 ms at 100,000 nodes",
            measured: format!("median {:.0} ms", nodes.median_ms),
            met: nodes.median_ms <= 150.0,
        },
        Target {
            what: "`/metrics` ≤ 250 ms at 100,000 nodes",
            measured: format!("median {:.0} ms", metrics.median_ms),
            met: metrics.median_ms <= 250.0,
        },
        Target {
            what: "cold start to the first answer ≤ 20 ms",
            measured: format!("{:.0} ms", first_answer.as_secs_f64() * 1000.0),
            met: first_answer <= Duration::from_millis(20),
        },
    ];
    targets.extend(mixed.targets);
    Ok((text, targets))
}

struct Timed {
    median_ms: f64,
    max_ms: f64,
    bytes: usize,
}

fn timed(addr: SocketAddr, path: &str, auth: &str) -> Result<Timed, String> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..TRIES {
        let started = Instant::now();
        let (status, body) =
            seed::request(addr, "GET", path, auth, "").ok_or_else(|| format!("GET {path}: no answer"))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(format!("GET {path} answered {status}: {}", body.chars().take(300).collect::<String>()));
        }
        bytes = body.len();
    }
    times.sort_by(f64::total_cmp);
    Ok(Timed { median_ms: times[TRIES / 2], max_ms: times[TRIES - 1], bytes })
}

/// The interval the 100,000 nodes announce: 100,000 nodes at 2,000 heartbeats a second
/// beat every 50 s each, so that is what a fleet of this size sends, with room to spare.
const INTERVAL_SECS: u32 = 90;

/// How long the mixed load runs.
const MIXED_SECONDS: u64 = 30;

struct Mixed {
    text: String,
    targets: Vec<Target>,
}

/// Real load, all at once, on the collector holding 100,000 nodes, confined to the unit's
/// `MemoryMax=`: about 2,000 heartbeats a second (wrk, paced), Prometheus scraping
/// `/metrics` and `/metrics/nodes` every 15 s, five dashboards (`dashboard.rs`) opened and
/// refreshed every 4 s, and a failed login every second.
fn mixed_load(collector: &Collector, key: &str, nodes: &Path) -> Result<Mixed, String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let limit = MemoryLimit::of_unit()?;
    let confined = MemoryLimit::confine(collector.pid(), limit);
    if let Err(why) = &confined {
        println!("not confining the collector: {why}");
    }
    let addr = collector.addr();
    let stop = AtomicBool::new(false);
    let (scrapes, logins, failures) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    // In turn, as agents beat: each node about every 50 s at 2,000 a second, within its interval.
    let paced = Shape {
        connections: 24,
        seconds: MIXED_SECONDS,
        close: true,
        delay_ms: Some(10),
        push: false,
        in_turn: true,
        interval_secs: Some(INTERVAL_SECS),
    };
    println!("mixed load at {NODES} nodes for {MIXED_SECONDS} s");
    let every = |period: Duration, count: &AtomicUsize, work: &(dyn Fn() -> bool + Sync)| {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next += period;
                if work() {
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let scrape = || {
        ["/metrics", "/metrics/nodes"]
            .iter()
            .all(|p| seed::request(addr, "GET", p, "", "").is_some_and(|(s, _)| s == 200))
    };
    // Five people have the dashboard open: each opened it (every page) before the window,
    // and refreshes it with `changed_since` every 4 s, as app.js does, starting 0.8 s apart.
    let boards = (0..5).map(|_| Dashboard::open(addr, key)).collect::<Result<Vec<_>, _>>()?;
    let login = || {
        let body = r#"{"username":"someone","password":"not the password"}"#;
        seed::request(addr, "POST", "/api/auth/login", "", body).is_some_and(|(s, _)| [401, 429].contains(&s))
    };
    let (every, scrape, login) = (&every, &scrape, &login);
    let (stop, failures) = (&stop, &failures);
    let (scrapes, logins) = (&scrapes, &logins);
    let load = std::thread::scope(|scope| {
        scope.spawn(move || every(Duration::from_secs(15), scrapes, scrape));
        let boards: Vec<_> = boards
            .into_iter()
            .enumerate()
            .map(|(nth, mut board)| {
                scope.spawn(move || {
                    failures.fetch_add(
                        board.refresh_until(Duration::from_millis(800 * nth as u64), stop),
                        Ordering::Relaxed,
                    );
                    board
                })
            })
            .collect();
        scope.spawn(move || every(Duration::from_secs(1), logins, login));
        // The process's own memory (anonymous: heap and stacks), sampled: VmRSS also counts
        // the mapped store file, whose pages may be charged to another cgroup.
        let (pid, stop) = (collector.pid(), &stop);
        let anon = scope.spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(anon_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        });
        let load = load::wrk(&collector.url, nodes, paced);
        stop.store(true, Ordering::Relaxed);
        let boards: Vec<Dashboard> = boards.into_iter().filter_map(|b| b.join().ok()).collect();
        load.map(|load| (load, anon.join().unwrap_or(0), boards))
    })?;
    let (load, anon_peak_kib, boards) = load;
    let (mut opened, mut refreshed) = (Walk::default(), Walk::default());
    for board in &boards {
        opened.add(board.opened);
        refreshed.add(board.refreshes);
    }
    let n = boards.len().max(1);
    let opened = Walk { bytes: opened.bytes / n, millis: opened.millis / n as f64, ..opened };
    let usage = Usage::of(collector.pid());
    let alive = seed::request(addr, "GET", "/healthz", "", "").is_some_and(|(s, _)| s == 200);
    let (peak, hits) = match &confined {
        Ok(cgroup) => (cgroup.peak_bytes(), cgroup.hits()),
        Err(_) => (None, 0),
    };
    let confinement = match (&confined, peak) {
        (Ok(_), Some(peak)) => format!(
            "in a memory cgroup at the unit's MemoryMax ({:.0} MiB): the cgroup's peak (RSS and page cache) {:.1} MiB, limit reached {hits} times",
            limit as f64 / 1_048_576.0,
            peak as f64 / 1_048_576.0
        ),
        (Err(why), _) => format!("not confined ({why})"),
        _ => "confined, peak unknown".to_owned(),
    };
    let text = format!(
        "### Mixed load at {NODES} nodes\n\n\
         For {MIXED_SECONDS} s at once: wrk paced (24 connections, 10 ms apart) heartbeats for the {NODES} nodes in turn (each every ~50 s, announcing {INTERVAL_SECS} s); \
         `/metrics` and `/metrics/nodes` scraped every 15 s ({} scrapes); five open dashboards (each read every page of \
         `/api/nodes?limit=5000` once, before the window) refreshing every 4 s, 0.8 s apart, with what changed \
         (`changed_since`, as the dashboard does; {} refreshes); a failed login every second ({}); {} of those failed. \
         The collector ran {confinement}.\n\n\
         | heartbeats/s | p50 ms | p99 ms | p99.9 ms | max ms | errors (timeouts) | collector peak RSS MiB (with the mapped store) | peak anonymous memory MiB | still answering |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---|\n\
         | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} ({}) | {:.1} | {:.1} | {} |\n",
        scrapes.load(Ordering::Relaxed),
        refreshed.count,
        logins.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        load.rate(),
        load.p50_ms,
        load.p99_ms,
        load.p999_ms,
        load.max_ms,
        load.errors,
        load.timeouts,
        mib(usage.peak_rss_kib),
        mib(anon_peak_kib),
        if alive { "yes" } else { "**no**" },
    );
    let text = format!(
        "{text}\n#### One open dashboard at {NODES} nodes\n\n\
         The five dashboards of the mixed load, per dashboard: opening (before the window) averaged, refreshes (beside the load) added up; \
         collector time is each fetch's time on loopback, so it includes waiting beside the rest of the load.\n\n{}{}",
        super::dashboard::TABLE_HEAD,
        super::dashboard::row(NODES, opened, refreshed),
    );
    let limit_mib = limit as f64 / 1_048_576.0;
    let targets = vec![
        Target {
            what: "mixed load at 100,000 nodes: heartbeat p99 ≤ 5 ms and p99.9 ≤ 20 ms",
            measured: format!(
                "p99 {:.2} ms, p99.9 {:.2} ms at {:.0}/s, {} errors",
                load.p99_ms,
                load.p999_ms,
                load.rate(),
                load.errors
            ),
            met: load.p99_ms <= 5.0 && load.p999_ms <= 20.0 && load.errors == 0,
        },
        Target {
            what: "peak RSS ≤ the unit's MemoryMax through every endpoint at 100,000 nodes (mixed load)",
            measured: format!(
                "peak RSS {:.1} MiB (with the mapped store; anonymous {:.1} MiB) of {limit_mib:.0}, still answering: {alive}; {confinement}",
                mib(usage.peak_rss_kib),
                mib(anon_peak_kib)
            ),
            met: mib(usage.peak_rss_kib) <= limit_mib && mib(anon_peak_kib) <= limit_mib && alive && confined.is_ok(),
        },
    ];
    Ok(Mixed { text, targets })
}

/// A process's resident anonymous memory (`RssAnon`), in KiB.
fn anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("RssAnon:"));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}
