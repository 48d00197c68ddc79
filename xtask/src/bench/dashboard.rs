//! One open dashboard, doing what `collector/web/app.js` does: every page of
//! `GET /api/nodes?limit=5000` once, then every 4 s only what changed since the cursor the
//! last refresh was given (`changed_since`). What each refresh costs is kept, for the
//! report's "one open dashboard per minute".

use super::seed;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the dashboard refreshes (`REFRESH_MS` in app.js).
pub const REFRESH_SECS: u64 = 4;

pub struct Dashboard {
    addr: SocketAddr,
    auth: String,
    cursor: String,
    /// The first, whole fetch.
    pub opened: Walk,
    /// Every refresh since, added up.
    pub refreshes: Walk,
}

/// What walking the pages of fetches cost: the fetches and their pages, answers' bytes,
/// time from the first request to the last answer (loopback, so it is the collector's
/// time), and nodes.
#[derive(Clone, Copy, Default)]
pub struct Walk {
    pub count: usize,
    pub pages: usize,
    pub bytes: usize,
    pub millis: f64,
    pub nodes: usize,
}

impl Walk {
    pub fn add(&mut self, other: Walk) {
        self.count += other.count;
        self.pages += other.pages;
        self.bytes += other.bytes;
        self.millis += other.millis;
        self.nodes += other.nodes;
    }

    /// Bytes and collector milliseconds a minute at one refresh every `REFRESH_SECS`.
    pub fn per_minute(&self) -> (f64, f64) {
        let per = |total: f64| total / self.count.max(1) as f64 * (60 / REFRESH_SECS) as f64;
        (per(self.bytes as f64), per(self.millis))
    }
}

impl Dashboard {
    pub fn open(addr: SocketAddr, key: &str) -> Result<Dashboard, String> {
        let auth = format!("Bearer {key}");
        let (opened, cursor) = walk(addr, &auth, None)?;
        Ok(Dashboard { addr, auth, cursor, opened, refreshes: Walk::default() })
    }

    pub fn refresh(&mut self) -> Result<(), String> {
        let (walk, cursor) = walk(self.addr, &self.auth, Some(&self.cursor))?;
        self.refreshes.add(walk);
        self.cursor = cursor;
        Ok(())
    }

    /// Refreshes every `REFRESH_SECS`, the first `first` from now plus one period, until
    /// `stop` is set; how many refreshes failed.
    pub fn refresh_until(&mut self, first: Duration, stop: &AtomicBool) -> usize {
        let (mut next, mut failed) = (Instant::now() + first + Duration::from_secs(REFRESH_SECS), 0);
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next += Duration::from_secs(REFRESH_SECS);
                failed += usize::from(self.refresh().is_err());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        failed
    }
}

/// Every page of one fetch of `/api/nodes?limit=5000` (what changed since `since`, if
/// given), and the cursor its first page gave.
pub fn walk(addr: SocketAddr, auth: &str, since: Option<&str>) -> Result<(Walk, String), String> {
    let started = Instant::now();
    let (mut walk, mut after, mut cursor) = (Walk { count: 1, ..Walk::default() }, String::new(), None);
    loop {
        let mut path = format!("/api/nodes?limit=5000&after={after}");
        if let Some(since) = since {
            path.push_str(&format!("&changed_since={since}"));
        }
        let (status, body) = seed::request(addr, "GET", &path, auth, "").ok_or("GET /api/nodes: no answer")?;
        if status != 200 {
            return Err(format!("GET {path} answered {status}"));
        }
        // Read by looking, not parsing: the client shares the collector's cores, and a
        // browser would not.
        walk.pages += 1;
        walk.bytes += body.len();
        walk.nodes += body.matches("\"node_id\":").count();
        let string = |name: &str| {
            let rest = body.rsplit_once(&format!("\"{name}\":\""))?.1;
            rest.split_once('"').map(|(value, _)| value.to_owned())
        };
        if cursor.is_none() {
            cursor = Some(string("cursor").ok_or("the node list has no cursor")?);
        }
        match string("next") {
            Some(next) => after = next,
            None => break,
        }
    }
    walk.millis = started.elapsed().as_secs_f64() * 1000.0;
    Ok((walk, cursor.unwrap_or_default()))
}

/// One dashboard opened beside paced heartbeats (`shape`, on the nodes in `nodes`) and
/// refreshed until they stop; the dashboard, and what wrk measured.
pub fn beside_heartbeats(
    url: &str,
    key: &str,
    nodes: &std::path::Path,
    shape: super::load::Shape,
) -> Result<(Dashboard, super::load::Measured), String> {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().map_err(|_| format!("not an address: {url}"))?;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let wrk = scope.spawn(|| {
            let measured = super::load::wrk(url, nodes, shape);
            done.store(true, Ordering::Relaxed);
            measured
        });
        std::thread::sleep(Duration::from_secs(1));
        let board = Dashboard::open(addr, key).and_then(|mut board| match board.refresh_until(Duration::ZERO, &done) {
            0 => Ok(board),
            failed => Err(format!("{failed} dashboard refreshes failed")),
        });
        let measured = wrk.join().map_err(|_| "the wrk thread panicked".to_owned())??;
        Ok((board?, measured))
    })
}

/// The report's line for one dashboard at `nodes` nodes.
pub fn row(nodes: usize, opened: Walk, refreshes: Walk) -> String {
    let (bytes, millis) = refreshes.per_minute();
    format!(
        "| {nodes} | {:.1} MiB, {:.0} ms | {} | {:.0} | {:.1} MiB | {:.0} ms |\n",
        opened.bytes as f64 / 1_048_576.0,
        opened.millis,
        refreshes.count,
        refreshes.nodes as f64 / refreshes.count.max(1) as f64,
        bytes / 1_048_576.0,
        millis
    )
}

/// The head of the report's table of dashboards.
pub const TABLE_HEAD: &str = "| nodes | opening: every page | refreshes measured | nodes per refresh | bytes a minute | collector time a minute |\n\
     |---:|---:|---:|---:|---:|---:|\n";
