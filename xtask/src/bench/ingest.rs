//! Durable ingest: 10,000 enrolled nodes' heartbeats, authenticated, against the collector,
//! a bare tiny_http responder (the ceiling for this stack) and Prometheus Pushgateway.

use super::load::{self, Measured, Shape};
use super::{mib, seed, Target, Usage};
use crate::util::{self, Collector};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 10_000;
const CONNECTIONS: usize = 32;
const SECONDS: u64 = 5;
/// Paced: 24 connections, each waiting 10 ms before each heartbeat: about 2,000 a second.
const PACED: Shape = Shape {
    connections: 24,
    seconds: SECONDS,
    close: true,
    delay_ms: Some(10),
    push: false,
    in_turn: false,
    interval_secs: None,
};

/// A server under load: where it listens, its process, and whether it is Hearth.
struct Server<'a> {
    name: &'static str,
    url: String,
    pid: u32,
    hearth: bool,
    nodes: &'a Path,
}

struct Row {
    server: &'static str,
    mode: &'static str,
    load: Measured,
    cpu_per_1000: f64,
    rss_kib: u64,
    batch: Option<f64>,
}

pub fn report(out: &Path) -> Result<(String, Vec<Target>), String> {
    let release = util::root().join("target/release");
    let nodes = out.join("nodes-10k.txt");
    let data_dir = out.join("ingest");
    let new_conn = Shape { connections: CONNECTIONS, delay_ms: None, ..PACED };
    let keep_alive = Shape { close: false, ..new_conn };
    let mut rows = Vec::new();

    let collector = Collector::start(&release.join("hearth-collector"), &data_dir, &["--mints-per-hour", "1000000"])?;
    let key = seed::api_key(&collector)?;
    println!("enrolling {NODES} nodes");
    let enrol_rate = seed::enrol(&collector, &key, NODES, None, &nodes)?;
    let hearth = server("Hearth (group commit)", &collector, true, &nodes);
    // The ratios to the ceiling are what matter, and this machine's speed drifts from one
    // minute to the next: Hearth and the bare responder take turns, round after round, and
    // each one's median round is kept.
    let bare = Collector::start(&release.join("examples/bare_tiny_http"), &out.join("bare"), &[])?;
    let ceiling = server("bare tiny_http", &bare, false, &nodes);
    let mut ceiling_rows = Vec::new();
    for (mode, shape) in [("new connection", new_conn), ("keep-alive", keep_alive)] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(measure(&hearth, mode, shape)?);
            theirs.push(measure(&ceiling, mode, shape)?);
        }
        rows.push(median(ours));
        ceiling_rows.push(median(theirs));
    }
    drop(bare);
    rows.push(measure(&hearth, "paced, new connection", PACED)?);
    println!("one dashboard beside paced heartbeats");
    // What 10,000 agents beating every 30 s send: about 330 a second, each node in turn.
    let fleet = Shape { connections: 4, seconds: 21, in_turn: true, interval_secs: Some(60), ..PACED };
    let (board, beside) = super::dashboard::beside_heartbeats(&hearth.url, &key, &nodes, fleet)?;
    let dashboard = format!(
        "### One open dashboard at {NODES} nodes\n\n\
         Opened (every page of `/api/nodes?limit=5000`) and then refreshed every {} s with `changed_since`, as the dashboard does, \
         beside what such a fleet sends (4 connections, 10 ms apart, the nodes in turn: {:.0} heartbeats/s, p99 {:.2} ms). \
         A refresh returns the nodes that beat since 2 s before the oldest write the last one could have missed; collector time is each fetch's time on loopback.\n\n{}{}\n",
        super::dashboard::REFRESH_SECS,
        beside.rate(),
        beside.p99_ms,
        super::dashboard::TABLE_HEAD,
        super::dashboard::row(NODES, board.opened, board.refreshes),
    );
    let mix = HostileMix::start(collector.addr(), &key);
    let row = measure(&hearth, "paced, beside a hostile mix", PACED);
    let mix_said = mix.stop();
    println!("hostile mix: {mix_said}");
    rows.push(row?);
    drop(collector);

    let one = Collector::start(&release.join("hearth-collector"), &data_dir, &["--max-batch", "1"])?;
    rows.push(measure(&server("Hearth, one commit per request", &one, true, &nodes), "new connection", new_conn)?);
    drop(one);

    rows.extend(ceiling_rows);

    // Pushgateway checks each push against every group it holds, so it is measured twice:
    // with the same 10,000 nodes, and (on a fresh one) with 10.
    let few = out.join("nodes-10.txt");
    let ten: String = std::fs::read_to_string(&nodes)
        .map_err(|e| e.to_string())?
        .lines()
        .take(10)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&few, ten).map_err(|e| e.to_string())?;
    if let Ok(gateway) = Pushgateway::start() {
        let push = Server {
            name: "Pushgateway, 10 nodes",
            url: gateway.url.clone(),
            pid: gateway.child.id(),
            hearth: false,
            nodes: &few,
        };
        rows.push(measure(&push, "new connection", Shape { push: true, ..new_conn })?);
    }
    match Pushgateway::start() {
        Ok(gateway) => {
            let push = Server {
                name: "Pushgateway",
                url: gateway.url.clone(),
                pid: gateway.child.id(),
                hearth: false,
                nodes: &nodes,
            };
            rows.push(measure(&push, "new connection", Shape { push: true, ..new_conn })?);
            rows.push(measure(&push, "keep-alive", Shape { push: true, ..keep_alive })?);
            rows.push(measure(&push, "paced, new connection", Shape { push: true, ..PACED })?);
        }
        Err(why) => println!("skipping Pushgateway: {why}"),
    }
    let (mut text, targets) = write(&rows, enrol_rate);
    let _ = writeln!(text, "The hostile mix beside the last paced row: {mix_said}.\n");
    text.push_str(&dashboard);
    Ok((text, targets))
}

/// What a careless or hostile crowd does at once, beside the paced heartbeats: clients
/// that ask for `/metrics/nodes` (every node's facts, megabytes) and never read it, a
/// flood of failed logins (argon2id each), Prometheus scraping `/metrics` and
/// `/metrics/nodes`, and dashboards reading every page of `/api/nodes`.
struct HostileMix {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(&'static str, usize)>>,
}

impl HostileMix {
    fn start(addr: std::net::SocketAddr, key: &str) -> HostileMix {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let auth = format!("Bearer {key}");
        let mut threads = Vec::new();
        let mut spawn = |what: &'static str, mut work: Box<dyn FnMut() -> bool + Send>| {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    done += usize::from(work());
                }
                (what, done)
            }));
        };
        spawn(
            "never-reading clients of /metrics/nodes",
            Box::new(move || {
                let mut held = Vec::new();
                for _ in 0..8 {
                    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                        let _ = s.write_all(b"GET /metrics/nodes HTTP/1.1\r\nHost: bench\r\n\r\n");
                        held.push(s);
                    }
                }
                std::thread::sleep(Duration::from_secs(3));
                !held.is_empty()
            }),
        );
        for _ in 0..2 {
            spawn(
                "failed logins",
                Box::new(move || {
                    let body = r#"{"username":"intruder","password":"guess"}"#;
                    super::seed::request(addr, "POST", "/api/auth/login", "", body).is_some()
                }),
            );
        }
        spawn(
            "scrapes of /metrics and /metrics/nodes",
            Box::new(move || {
                let ok = super::seed::request(addr, "GET", "/metrics", "", "").is_some()
                    && super::seed::request(addr, "GET", "/metrics/nodes", "", "").is_some();
                std::thread::sleep(Duration::from_millis(500));
                ok
            }),
        );
        for _ in 0..2 {
            let auth = auth.clone();
            spawn(
                "dashboard refreshes (every page of /api/nodes)",
                Box::new(move || {
                    let mut path = "/api/nodes?limit=5000".to_owned();
                    while let Some((200, body)) = super::seed::request(addr, "GET", &path, &auth, "") {
                        match body.split("\"next\":\"").nth(1).and_then(|rest| rest.split('"').next()) {
                            Some(next) => path = format!("/api/nodes?limit=5000&after={next}"),
                            None => return true,
                        }
                    }
                    false
                }),
            );
        }
        HostileMix { stop, threads }
    }

    /// Stops the crowd; says what it did.
    fn stop(self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut done: Vec<(&str, usize)> = Vec::new();
        for thread in self.threads {
            let Ok((what, n)) = thread.join() else { continue };
            match done.iter_mut().find(|(w, _)| *w == what) {
                Some((_, total)) => *total += n,
                None => done.push((what, n)),
            }
        }
        done.iter().map(|(what, n)| format!("{n} × {what}")).collect::<Vec<_>>().join(", ")
    }
}

fn server<'a>(name: &'static str, collector: &Collector, hearth: bool, nodes: &'a Path) -> Server<'a> {
    Server { name, url: collector.url.clone(), pid: collector.pid(), hearth, nodes }
}

/// Rounds of Hearth against the bare responder, taken in turns.
const ROUNDS: usize = 3;

/// The round with the median rate.
fn median(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| a.load.rate().total_cmp(&b.load.rate()));
    rounds.swap_remove(rounds.len() / 2)
}

fn measure(server: &Server, mode: &'static str, shape: Shape) -> Result<Row, String> {
    println!("{}, {mode}", server.name);
    load::wrk(&server.url, server.nodes, Shape { seconds: 1, ..shape })?; // warm up
    let (before, batches) = (Usage::of(server.pid), batch_totals(server));
    let load = load::wrk(&server.url, server.nodes, shape)?;
    let after = Usage::of(server.pid);
    let batch = match (batches, batch_totals(server)) {
        (Some((sum0, n0)), Some((sum1, n1))) if n1 > n0 => Some((sum1 - sum0) / (n1 - n0)),
        _ => None,
    };
    let answered = load.requests.saturating_sub(load.errors).max(1) as f64;
    let cpu_per_1000 = (after.cpu_secs - before.cpu_secs) / answered * 1000.0;
    Ok(Row { server: server.name, mode, load, cpu_per_1000, rss_kib: after.rss_kib, batch })
}

/// The collector's `hearth_commit_batch_requests` histogram: its sum and count.
fn batch_totals(server: &Server) -> Option<(f64, f64)> {
    if !server.hearth {
        return None;
    }
    let addr = server.url.trim_start_matches("http://").parse().ok()?;
    let (_, text) = super::seed::request(addr, "GET", "/metrics", "", "")?;
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok());
    Some((value("hearth_commit_batch_requests_sum ")?, value("hearth_commit_batch_requests_count ")?))
}

fn write(rows: &[Row], enrol_rate: f64) -> (String, Vec<Target>) {
    let mut text = format!(
        "## Durable ingest\n\n\
         {NODES} enrolled nodes (enrolled over the API first, {enrol_rate:.0} nodes/s: mint a token, enrol); \
         `wrk -t 2 -c {CONNECTIONS}` posts the full heartbeat of docs/protocol.md for a random node, with that node's token, \
         for {SECONDS} s per row after 1 s of warm-up; the new-connection and keep-alive rows of Hearth and of the bare responder are each the median of {ROUNDS} rounds, the two taking turns. Hearth answers each heartbeat after the fsync'd commit that holds it. \
         In the keep-alive rows Hearth keeps each connection for request after request; the bare responder answers through tiny_http's own `respond`, which closes the connection, so its two rows are alike. \
         Pushgateway gets the same rate of small pushes (six gauges per node, `POST /metrics/job/hearth/instance/ID`), \
         kept in memory; it checks each push against every group it holds, so it is also measured with 10 nodes. Paced rows: 24 connections, each waiting 10 ms before each request. \
         Latency is wrk's: first byte of the request to last byte of the answer. Errors: refused, cut, non-2xx, or unanswered within 2 s.\n\n\
         | server | mode | requests/s | p50 ms | p99 ms | max ms | errors (timeouts) | CPU s per 1,000 | RSS MiB | requests per commit |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let l = &row.load;
        let batch = row.batch.map_or("".into(), |b| format!("{b:.1}"));
        let _ = writeln!(
            text,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} ({}) | {:.3} | {:.1} | {batch} |",
            row.server,
            row.mode,
            l.rate(),
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.errors,
            l.timeouts,
            row.cpu_per_1000,
            mib(row.rss_kib)
        );
    }
    let find = |server: &str, mode: &str| rows.iter().find(|r| r.server.starts_with(server) && r.mode == mode);
    let mut targets = Vec::new();
    let mut ratios = String::new();
    if let Some(bare) = find("bare", "new connection") {
        for mode in ["new connection", "keep-alive"] {
            if let Some(hearth) = find("Hearth (group", mode) {
                let ratio = hearth.load.rate() / bare.load.rate().max(1.0);
                let starved = hearth.load.timeouts;
                let _ = writeln!(ratios, "- Hearth, {mode} / bare tiny_http, new connection: **{ratio:.2}×**");
                targets.push(Target {
                    what: if mode == "keep-alive" {
                        "durable ingest ≥ 0.8 × bare tiny_http (new connection), keep-alive, no connection starved"
                    } else {
                        "durable ingest ≥ 0.8 × bare tiny_http (new connection), new connection, no connection starved"
                    },
                    measured: format!("{ratio:.2}×, {starved} unanswered within 2 s, max {:.0} ms", hearth.load.max_ms),
                    met: ratio >= 0.8 && starved == 0,
                });
            }
        }
    }
    if let (Some(group), Some(one)) = (find("Hearth (group", "new connection"), find("Hearth, one", "new connection")) {
        let _ = writeln!(
            ratios,
            "- group commit / one commit per request: **{:.1}×**",
            group.load.rate() / one.load.rate().max(1.0)
        );
    }
    for mode in ["new connection", "keep-alive", "paced, new connection"] {
        if let (Some(hearth), Some(gateway)) =
            (find("Hearth (group", mode), rows.iter().find(|r| r.server == "Pushgateway" && r.mode == mode))
        {
            let _ = writeln!(
                ratios,
                "- Hearth / Pushgateway, {mode}: **{:.2}×** the rate, **{:.2}×** the CPU per request, p99 {:.2} vs {:.2} ms",
                hearth.load.rate() / gateway.load.rate().max(1.0),
                hearth.cpu_per_1000 / gateway.cpu_per_1000.max(1e-9),
                hearth.load.p99_ms,
                gateway.load.p99_ms
            );
        }
    }
    if let (Some(hearth), Some(gateway)) =
        (find("Hearth (group", "new connection"), find("Pushgateway, 10", "new connection"))
    {
        let _ = writeln!(
            ratios,
            "- Hearth (10,000 nodes) / Pushgateway holding 10 nodes, new connection: **{:.2}×** the rate",
            hearth.load.rate() / gateway.load.rate().max(1.0)
        );
    }
    if let Some(paced) = find("Hearth (group", "paced, new connection") {
        let rate = paced.load.rate();
        targets.push(Target {
            what: "p99 ≤ 5 ms at 2,000 heartbeats/s",
            measured: format!("p99 {:.2} ms at {rate:.0}/s", paced.load.p99_ms),
            met: paced.load.p99_ms <= 5.0 && rate >= 1800.0,
        });
    }
    if let (Some(quiet), Some(mixed)) =
        (find("Hearth (group", "paced, new connection"), find("Hearth (group", "paced, beside a hostile mix"))
    {
        let _ = writeln!(
            ratios,
            "- paced heartbeats beside the hostile mix / alone: p99 {:.2} vs {:.2} ms (**{:.2}×**), max {:.1} vs {:.1} ms, {} vs {} errors",
            mixed.load.p99_ms,
            quiet.load.p99_ms,
            mixed.load.p99_ms / quiet.load.p99_ms.max(1e-9),
            mixed.load.max_ms,
            quiet.load.max_ms,
            mixed.load.errors,
            quiet.load.errors
        );
        targets.push(Target {
            what: "heartbeat p99 ≤ 5 ms at 2,000/s beside non-readers, a login flood, scrapes and dashboards",
            measured: format!(
                "p99 {:.2} ms, max {:.1} ms, {} errors",
                mixed.load.p99_ms, mixed.load.max_ms, mixed.load.errors
            ),
            met: mixed.load.p99_ms <= 5.0 && mixed.load.errors == 0,
        });
    }
    let _ = writeln!(text, "\n{ratios}");
    (text, targets)
}

/// Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on a free loopback port.
struct Pushgateway {
    child: Child,
    url: String,
}

impl Pushgateway {
    fn start() -> Result<Pushgateway, String> {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            // Debian's default keeps every group in /var/lib/prometheus between runs, and its
            // cost per push grows with the groups it holds: start empty, in memory only.
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start prometheus-pushgateway (apt-get install prometheus-pushgateway): {e}")
            })?;
        let gateway = Pushgateway { child, url: format!("http://127.0.0.1:{port}") };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while super::seed::request(addr, "GET", "/-/ready", "", "").is_none_or(|(s, _)| s != 200) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("Pushgateway did not become ready in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(gateway)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
