//! The server loop: tiny_http in, group commit, replies out. The only module that touches tiny_http.
//!
//! One thread handles every request. It takes the request that arrived and every one
//! already waiting, applies them all in one LMDB write transaction, and commits. A second
//! thread, the flusher, makes that commit durable (`Store::sync`) and only then answers:
//! an acknowledged write is on disk, a burst pays for its flushes once, and the request
//! thread handles the next batch while the last one's flush runs.
//!
//! Every response closes its connection. tiny_http gives each connection a pool
//! thread for its whole life and queues new connections behind busy ones, so a client
//! holding keep-alive connections (cloudflared does) could starve the others.

use crate::alerts::worker::Stats;
use crate::alerts::{self, config::Channels};
use crate::api::{self, ApiError, Context, LoginLimiter, Method, Reply, MAX_BODY};
use crate::clock::Clock;
use crate::listen::Listener;
use crate::liveness::Policy;
use crate::metrics::{lock, Metrics};
use crate::store::Store;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub allow_anonymous: bool,
    /// The most requests one commit may carry; 1 turns group commit off.
    pub max_batch: usize,
    /// How long a client may take to send its request or read its answer.
    pub io_timeout: Duration,
    pub policy: Policy,
    pub channels: std::sync::Arc<Channels>,
    pub clock: Clock,
    pub alert_stats: std::sync::Arc<Stats>,
    /// Exit after this long without a request, when no node is watched and no alert waits.
    pub idle_exit: Option<Duration>,
    /// Take the client's address from `CF-Connecting-IP`, and the scheme from
    /// `X-Forwarded-Proto` (cloudflared in front).
    pub trust_cloudflare: bool,
    /// Where agent binaries are served from (`--agent-dir`).
    pub agent_dir: Option<std::path::PathBuf>,
    /// The collector's address as nodes reach it, for install commands (`--public-url`).
    pub public_url: Option<String>,
}

// The patched tiny_http reads bodies up to this size on the connection's thread, so the
// request thread never waits for a client.
const _: () = assert!(MAX_BODY <= tiny_http::BUFFERED_BODY);

/// How often the loop looks for nodes past their deadline.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often old events, expired sessions and spent enrolment tokens are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a used or expired enrolment token stays listed.
const PRUNE_TOKENS_MS: i64 = 7 * 86_400 * 1000;

/// Committed batches waiting for the flusher; when it falls this far behind, the request
/// thread waits for it.
const FLUSH_QUEUE: usize = 4;

/// Serves requests until the process ends. `wake` tells the alert worker that the
/// outbox has something new.
pub fn serve(listener: Listener, store: &Store, config: &ServeConfig, wake: &SyncSender<()>) -> io::Result<()> {
    // Accepted sockets inherit these, so a client that stalls mid-request is cut off.
    set_socket_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, config.io_timeout)?;
    set_socket_timeout(listener.as_raw_fd(), libc::SO_SNDTIMEO, config.io_timeout)?;
    let server = match listener {
        Listener::Tcp(l) => tiny_http::Server::from_listener(l, None),
        Listener::Unix(l, _) => tiny_http::Server::from_listener(l, None),
    }
    .map_err(io::Error::other)?;
    let metrics = Mutex::new(Metrics::default());
    std::thread::scope(|scope| {
        let (committed, to_flush) = std::sync::mpsc::sync_channel(FLUSH_QUEUE);
        std::thread::Builder::new()
            .name("flush".into())
            .spawn_scoped(scope, || flush(to_flush, store, &metrics, wake))?;
        // Returning drops `committed`: the flusher answers what is left, then the scope ends.
        accept(&server, store, config, &metrics, &committed, wake)
    })
}

/// The request thread's loop: batches, the sweep, pruning, and the idle exit.
fn accept(
    server: &tiny_http::Server,
    store: &Store,
    config: &ServeConfig,
    metrics: &Mutex<Metrics>,
    flusher: &SyncSender<Committed>,
    wake: &SyncSender<()>,
) -> io::Result<()> {
    let mut last_request = Instant::now();
    let (mut last_sweep, mut last_prune) = (Instant::now() - SWEEP_EVERY, Instant::now() - PRUNE_EVERY);
    let logins = RefCell::new(LoginLimiter::default());
    loop {
        if let Some(first) = server.recv_timeout(SWEEP_EVERY)? {
            last_request = Instant::now();
            let mut batch = vec![first];
            while batch.len() < config.max_batch.max(1) {
                match server.try_recv() {
                    Ok(Some(request)) => batch.push(request),
                    _ => break,
                }
            }
            handle_batch(batch, store, config, metrics, &logins, flusher);
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            let used = store.read(|txn| txn.database_bytes()).unwrap_or_default();
            let mut counters = lock(metrics);
            (counters.db_bytes, counters.db_used) = (store.disk_size(), used);
            drop(counters);
            let now = config.clock.now_ms();
            // `write` is durable when it returns, so the worker may send at once.
            match store.write(|txn| alerts::sweep(txn, now, &config.policy, &config.channels)) {
                Ok(0) => {}
                Ok(_) => {
                    let _ = wake.try_send(());
                }
                Err(e) => log::error!("sweep: {e}"),
            }
        }
        if config.idle_exit.is_some_and(|idle| last_request.elapsed() >= idle)
            && !store.read(|txn| txn.busy()).unwrap_or(true)
        {
            log::info!("idle, with no node to watch and no alert to send: exiting (socket activation starts it again)");
            // Connections not yet accepted stay in the socket's backlog for the next start;
            // the ones already accepted are answered first.
            server.stop_accepting();
            while let Some(first) = server.recv_timeout(Duration::from_millis(300))? {
                handle_batch(vec![first], store, config, metrics, &logins, flusher);
            }
            return Ok(());
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let now = config.clock.now_ms();
            let cutoff = now - alerts::EVENT_MAX_AGE_MS;
            match store.write(|txn| Ok((txn.prune_events(cutoff)?, txn.prune_credentials(now, now - PRUNE_TOKENS_MS)?)))
            {
                Ok((events, credentials)) if events + credentials > 0 => {
                    log::info!("dropped {events} events older than 30 days, {credentials} expired sessions and tokens");
                }
                Ok(_) => {}
                Err(e) => log::error!("pruning: {e}"),
            }
        }
    }
}

/// A committed batch, waiting for the flush that makes it durable before it is answered.
struct Committed {
    answers: Vec<Answer>,
    /// Alerts the batch raised: the worker is woken once they are on disk.
    alerts: usize,
    /// When the batch was taken, for the request latency histogram.
    started: Instant,
}

struct Answer {
    request: tiny_http::Request,
    reply: Reply,
    heartbeat: bool,
}

/// Applies a batch in one write transaction, commits it, and hands the answers to the flusher.
fn handle_batch(
    mut batch: Vec<tiny_http::Request>,
    store: &Store,
    config: &ServeConfig,
    metrics: &Mutex<Metrics>,
    logins: &RefCell<LoginLimiter>,
    flusher: &SyncSender<Committed>,
) {
    let started = Instant::now();
    let requests: Vec<Result<api::Request, Reply>> =
        batch.iter_mut().map(|r| read_request(r, config.trust_cloudflare)).collect();
    let context = Context {
        now_ms: config.clock.now_ms(),
        allow_anonymous: config.allow_anonymous,
        policy: &config.policy,
        channels: &config.channels,
        metrics,
        alert_stats: &config.alert_stats,
        logins,
        agent_dir: config.agent_dir.as_deref(),
        public_url: config.public_url.as_deref(),
    };
    let committing = Instant::now();
    let mut alerts = 0;
    let outcome = store.write_unsynced(|txn| {
        let replies = requests
            .iter()
            .map(|request| match request {
                Ok(request) => api::handle(request, txn, &context),
                Err(reply) => Ok(reply.clone()),
            })
            .collect::<Result<Vec<Reply>, _>>();
        alerts = txn.alerts_written();
        replies
    });
    {
        let mut metrics = lock(metrics);
        metrics.commit_seconds.observe(committing.elapsed().as_secs_f64());
        metrics.batch_requests.observe(batch.len() as f64);
    }
    let replies = outcome.unwrap_or_else(|e| vec![ApiError::storage(&e).into_reply(); batch.len()]);
    log::debug!("committed a batch of {}", batch.len());
    let answers = batch
        .into_iter()
        .zip(replies)
        .zip(&requests)
        .map(|((request, reply), parsed)| {
            let heartbeat = parsed.as_ref().map_or_else(
                |_| request.url().ends_with("/agent/heartbeat"),
                |r| r.method == Method::Post && r.path.ends_with("/agent/heartbeat"),
            );
            Answer { request, reply, heartbeat }
        })
        .collect();
    // Only fails if the flusher is gone, which happens only once this thread returns.
    let _ = flusher.send(Committed { answers, alerts, started });
}

/// The flusher's loop: takes every committed batch waiting, flushes them all to disk at
/// once, and answers them in order; a failed flush turns every answer into a 500.
fn flush(batches: Receiver<Committed>, store: &Store, metrics: &Mutex<Metrics>, wake: &SyncSender<()>) {
    while let Ok(first) = batches.recv() {
        let waiting: Vec<Committed> = std::iter::once(first).chain(batches.try_iter()).collect();
        let flushed = store.sync();
        if let Err(e) = &flushed {
            log::error!("flushing to disk failed; answering those requests with an error: {e}");
        }
        let mut alerts = 0;
        let mut answered = Vec::new();
        for batch in waiting {
            alerts += batch.alerts;
            for answer in batch.answers {
                let reply = match &flushed {
                    Ok(()) => answer.reply,
                    Err(e) => ApiError::storage(e).into_reply(),
                };
                respond(answer.request, &reply);
                answered.push((answer.heartbeat.then_some(reply.status), batch.started.elapsed()));
            }
        }
        if alerts > 0 && flushed.is_ok() {
            let _ = wake.try_send(());
        }
        let mut metrics = lock(metrics);
        for (heartbeat, took) in answered {
            if let Some(status) = heartbeat {
                metrics.count_heartbeat(status);
            }
            metrics.request_seconds.observe(took.as_secs_f64());
        }
    }
}

/// Reads what the API needs from a request: method, path, credentials and a capped body.
fn read_request(request: &mut tiny_http::Request, trust_cloudflare: bool) -> Result<api::Request, Reply> {
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Delete => Method::Delete,
        _ => Method::Other,
    };
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let header = |name: &'static str| {
        let found = request.headers().iter().find(|h| h.field.equiv(name));
        found.map(|h| h.value.as_str().trim().to_owned())
    };
    let bearer = header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()))
        .or_else(|| header("X-Host-Token"))
        .filter(|t| !t.is_empty());
    let content_type = header("Content-Type");
    let session = header("Cookie").and_then(|cookies| {
        let found = cookies.split(';').find_map(|c| c.trim().strip_prefix("hearth_session="));
        found.map(str::to_owned).filter(|c| !c.is_empty())
    });
    let forwarded = header("X-Forwarded-For").is_some() || header("CF-Connecting-IP").is_some();
    // A Unix socket has no remote address, and counts as local.
    let local = !forwarded && request.remote_addr().is_none_or(|a| a.ip().is_loopback());
    // Without --trust-proxy, these headers are anyone's to write, and are ignored.
    let relayed = header("CF-Connecting-IP").filter(|_| trust_cloudflare).and_then(|ip| ip.parse().ok());
    let https = trust_cloudflare && header("X-Forwarded-Proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let host = header("Host");
    let client = relayed.or_else(|| request.remote_addr().map(|a| a.ip()));
    if request.body_length().is_some_and(|len| len > MAX_BODY) {
        return Err(ApiError::body_too_large().into_reply());
    }
    let mut body = Vec::new();
    let read = request.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body);
    if let Err(e) = read {
        let (status, code) = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => (408, "request_timeout"),
            _ => (400, "invalid_body"),
        };
        return Err(ApiError::new(status, code, format!("could not read the request body: {e}")).into_reply());
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::body_too_large().into_reply());
    }
    let body = String::from_utf8(body)
        .map_err(|_| ApiError::new(400, "invalid_json", "the body is not UTF-8 text; send JSON").into_reply())?;
    Ok(api::Request { method, path, query, bearer, session, content_type, host, https, body, local, client })
}

fn respond(request: tiny_http::Request, reply: &Reply) {
    let head_only = *request.method() == tiny_http::Method::Head;
    let mut out = Vec::with_capacity(160 + reply.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    let mut writer = request.into_writer();
    if let Err(e) = writer.write_all(&out).and_then(|()| writer.flush()) {
        log::debug!("client left before its answer was written: {e}");
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        507 => "Insufficient Storage",
        _ => "Internal Server Error",
    }
}

fn set_socket_timeout(fd: RawFd, option: libc::c_int, timeout: Duration) -> io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: the descriptor is a live listening socket, and `value` is a timeval whose
    // size is passed alongside it, as setsockopt(2) requires for these options.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
