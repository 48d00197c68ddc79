//! The server loop: tiny_http in, group commit, replies out. The only module that touches tiny_http.
//!
//! One thread, the request thread, takes each request as it arrives and sends it where
//! its kind of work is done (`api::work`):
//! - writes are batched: it takes every write already waiting, applies them in one LMDB
//!   write transaction, and commits. A second thread, the flusher, makes that commit
//!   durable (`Store::sync`) and only then answers: an acknowledged write is on disk, a
//!   burst pays for its flushes once, and the request thread goes on meanwhile;
//! - reads go to a small pool of reader threads, each on its own read-only snapshot
//!   (LMDB serves readers beside the writer), so no scrape or dashboard delays a heartbeat;
//! - logins go to a login thread, which checks the password (argon2id, tens of ms) on a
//!   snapshot and hands the outcome back to be written in a batch.
//!
//! Every queue between them has a cap; past it the request is refused at once (503 or
//! 429 with `Retry-After`) rather than queued. No thread waits on a client: an answer up
//! to `INLINE_ANSWER` bytes is written by whichever thread has it when nothing written
//! before is still queued in the socket (always so for a connection's first), so it never
//! blocks, and otherwise by the connection's own thread (`answer_small`); larger ones
//! (only reads make them) are written by a writer thread of their own, a bounded number
//! at once, each within `WRITE_DEADLINE`.
//!
//! Connections are kept alive (HTTP/1.1, as cloudflared and Go's HTTP client expect)
//! while at most `tiny_http::KEEP_ALIVE_MAX` are open; each holds a thread of its own
//! between requests, which reads the next request only once the last one is answered.
//! Past that cap, when the client asks, for a streamed answer, and when the collector
//! exits when idle (`--idle-exit`), the answer says `Connection: close`; a connection
//! whose answer was not written whole closes, and an idle one closes after `--io-timeout`.

use crate::alerts::worker::Stats;
use crate::alerts::{self, config::Channels};
use crate::api::{self, ApiError, Context, LoginLimiter, LoginOutcome, Method, Reply, Work, MAX_BODY, MAX_PING_BODY};
use crate::clock::{Absence, Clock, Reading};
use crate::limits::{PasswordChecks, RateLimits};
use crate::listen::Listener;
use crate::liveness::Policy;
use crate::metrics::{lock, Metrics};
use crate::store::{self, Store};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tiny_http::KeepAlive;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub allow_anonymous: bool,
    /// New nodes one address may register by anonymous heartbeat, a minute.
    pub anonymous_per_minute: u32,
    /// Enrolment tokens one user may mint an hour.
    pub mints_per_hour: u32,
    /// The most requests one commit may carry; 1 turns group commit off.
    pub max_batch: usize,
    /// How long a client may take to send its request or read its answer.
    pub io_timeout: Duration,
    pub policy: Policy,
    /// When this collector started watching (`alerts::on_start`); `Shared::watching_since`
    /// moves on from it after an absence noticed while running.
    pub watching_since: i64,
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
    /// Where the request loop and the store say they are still working, for the watchdog.
    pub health: std::sync::Arc<crate::watchdog::Health>,
    /// The certificate pin enrolment answers carry (`--cert-pin`).
    pub cert_pin: Option<String>,
}

// The patched tiny_http reads bodies up to this size on the connection's thread, so the
// request thread never waits for a client.
const _: () = assert!(MAX_BODY <= tiny_http::BUFFERED_BODY && MAX_PING_BODY <= tiny_http::BUFFERED_BODY);

/// How often the loop looks for nodes past their deadline.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the ticker thread reads whether the collector runs (`clock::Running`).
const TICK_EVERY: Duration = Duration::from_secs(1);
/// How often old events, expired sessions and spent enrolment tokens are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a used or expired enrolment token stays listed.
const PRUNE_TOKENS_MS: i64 = 7 * 86_400 * 1000;

/// Committed batches waiting for the flusher; when it falls this far behind, the request
/// thread waits for it.
const FLUSH_QUEUE: usize = 4;
/// Reader threads, and the reads that may wait for one.
const READERS: usize = 2;
const READ_QUEUE: usize = 64;
/// Logins waiting for the login thread: with argon2id at tens of ms each, this also caps
/// the rate of password checks.
const LOGIN_QUEUE: usize = 8;
/// Answers up to this size are written by whichever thread has them when nothing written
/// before is still queued in the socket: its send buffer takes them whole, so the write
/// cannot wait on the client (`answer_small`).
const INLINE_ANSWER: usize = 4096;
/// Larger answers each get a writer thread: at most this many at once, holding at most
/// this many bytes between them, and each given this long to be read.
const MAX_WRITERS: usize = 64;
const MAX_WRITER_BYTES: usize = 64 << 20;
const WRITE_DEADLINE: Duration = Duration::from_secs(120);
/// About how large one piece of a streamed body is (`metrics::node_pieces`), for the budget.
const STREAM_PIECE: usize = 256 << 10;

/// Serves requests until the process ends. `wake` tells the alert worker that the
/// outbox has something new.
pub fn serve(listener: Listener, store: &Store, config: &ServeConfig, wake: &SyncSender<()>) -> io::Result<()> {
    // Accepted sockets inherit these, so a client that stalls is cut off; tiny_http sets
    // them on any that connected before (`from_listener_prepared`). An idle accept()
    // returns now and then too, so the accept loop can stop when asked.
    set_socket_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, config.io_timeout)?;
    set_socket_timeout(listener.as_raw_fd(), libc::SO_SNDTIMEO, config.io_timeout)?;
    let warned_forwarded = Arc::new(AtomicBool::new(false));
    let prepare = {
        let (trust_cloudflare, warned) = (config.trust_cloudflare, Arc::clone(&warned_forwarded));
        // Runs on each connection's own thread: the request thread gets a request read and
        // its heartbeat parsed, and spends its time on the store.
        let prepare: tiny_http::Prepare = Arc::new(move |request: &mut tiny_http::Request| {
            let prepared: Prepared = read_request(request, trust_cloudflare, &warned).map(api::prepare);
            request.set_prepared(Box::new(prepared));
        });
        Some(prepare)
    };
    let server = match listener {
        Listener::Tcp(l) => tiny_http::Server::from_listener_prepared(l, None, prepare, Some(config.io_timeout)),
        Listener::Unix(l, _) => tiny_http::Server::from_listener_prepared(l, None, prepare, Some(config.io_timeout)),
    }
    .map_err(io::Error::other)?;
    let shared = Shared {
        store,
        config,
        metrics: Mutex::new(Metrics::default()),
        logins: Mutex::new(LoginLimiter::default()),
        limits: RateLimits::new(config.anonymous_per_minute, config.mints_per_hour),
        password_checks: PasswordChecks::default(),
        responder: Responder { keep_alive: config.idle_exit.is_none(), ..Responder::default() },
        warned_forwarded,
        requests: AtomicU64::new(0),
        commit_in_flight: InFlight::default(),
        writing: Writing::new(),
        status_pages: Default::default(),
        watching_since: AtomicI64::new(config.watching_since),
        running: crate::clock::Running::new(config.watching_since),
    };
    let shared = &shared;
    let (reads, to_read) = std::sync::mpsc::sync_channel::<Job>(READ_QUEUE);
    let to_read = &Mutex::new(to_read);
    std::thread::scope(|scope| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let (committed, to_flush) = std::sync::mpsc::sync_channel(FLUSH_QUEUE);
        spawn("flush").spawn_scoped(scope, move || flush(to_flush, shared, wake))?;
        for _ in 0..READERS {
            spawn("read").spawn_scoped(scope, move || read(to_read, shared))?;
        }
        let (logins, to_verify) = std::sync::mpsc::sync_channel::<Job>(LOGIN_QUEUE);
        let (verified, checked) = std::sync::mpsc::sync_channel(LOGIN_QUEUE + 1);
        spawn("login").spawn_scoped(scope, move || verify(&to_verify, shared, &verified))?;
        // Readings of whether the collector runs, every second, until `accept` returns.
        let (_ticking, ticks) = std::sync::mpsc::sync_channel::<()>(0);
        spawn("tick").spawn_scoped(scope, move || {
            while let Err(RecvTimeoutError::Timeout) = ticks.recv_timeout(TICK_EVERY) {
                shared.take_reading(shared.config.clock.now_ms());
            }
        })?;
        let pools = Pools { reads, logins, checked, logins_in_flight: 0 };
        // Returning drops the senders: the pools and the flusher answer what is left, then the scope ends.
        accept(&server, shared, pools, &committed, wake)
    })
}

/// What every thread of the server shares.
struct Shared<'a> {
    store: &'a Store,
    config: &'a ServeConfig,
    metrics: Mutex<Metrics>,
    logins: Mutex<LoginLimiter>,
    limits: RateLimits,
    password_checks: PasswordChecks,
    responder: Responder,
    warned_forwarded: Arc<AtomicBool>,
    /// Requests taken so far: each one's `seq`.
    requests: AtomicU64,
    /// Whether the request thread is committing a batch right now, for the flusher.
    commit_in_flight: InFlight,
    /// When the write under way began, for readers' change cursors.
    writing: Writing,
    status_pages: api::status::Cache,
    /// When the collector started watching, or last came back from not running while
    /// it ran (`take_reading`).
    watching_since: AtomicI64,
    /// The clocks at the last reading (the ticker's, or a write's).
    running: crate::clock::Running,
}

/// When the write transaction under way on the request thread began, by the collector's
/// clock (`i64::MAX` while none is). A reader that reads the clock, then this, then opens
/// its snapshot, has every write stamped before the earlier of the two in that snapshot:
/// that is where the next `changed_since` must start (`Context::settled_ms`), so a change
/// committed just after a snapshot is not missed, and nothing older is sent again.
struct Writing(AtomicI64);

/// Marks a write under way until it drops.
struct WriteMark<'a>(&'a Writing);

impl Writing {
    fn new() -> Writing {
        Writing(AtomicI64::new(i64::MAX))
    }

    /// Marks a write under way from now: call it before the write reads the clock for its stamp.
    fn begin(&self, clock: &crate::clock::Clock) -> WriteMark<'_> {
        self.0.store(clock.now_ms(), Ordering::SeqCst);
        WriteMark(self)
    }

    /// For a snapshot about to be opened, the clock having read `now_ms`: every write
    /// stamped before what this returns is in that snapshot.
    fn settled(&self, now_ms: i64) -> i64 {
        now_ms.min(self.0.load(Ordering::SeqCst))
    }
}

impl Drop for WriteMark<'_> {
    fn drop(&mut self) {
        self.0 .0.store(i64::MAX, Ordering::SeqCst);
    }
}

/// Whether a commit is under way, and a way to wait for it to end.
#[derive(Default)]
struct InFlight {
    active: Mutex<bool>,
    ended: std::sync::Condvar,
}

/// Marks a commit under way for as long as it lives.
struct CommitGuard<'a>(&'a InFlight);

impl InFlight {
    fn start(&self) -> CommitGuard<'_> {
        *self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        CommitGuard(self)
    }

    /// Whether a commit after `newest` has flushed the file (waiting for one under way to
    /// finish): then the batches up to `newest` are durable without a flush of their own.
    fn covers(&self, store: &Store, newest: u64) -> bool {
        let mut active = self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if store.commits() > newest {
                return true;
            }
            if !*active {
                return false;
            }
            // Bounded, in case a commit ends without a notification reaching us.
            active = match self.ended.wait_timeout(active, Duration::from_millis(50)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        *self.0.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
        self.0.ended.notify_all();
    }
}

impl Shared<'_> {
    /// Takes a reading of whether the collector ran (`clock::Running`): every second on
    /// the ticker thread, and before every write (`absence_to_record`). An absence (the process was stopped, its host suspended, or the
    /// clock stepped forward) is the collector's own, and as after a restart nobody is
    /// blamed for it: views count silence from now at once, and the next write starts
    /// watching afresh (`absence_to_record`).
    fn take_reading(&self, now: i64) {
        match self.running.read(&self.config.clock, now, alerts::AWAY_NOTED_MS) {
            Reading::Running => {}
            Reading::Away { from, gap_ms } => {
                self.watching_since.store(now, Ordering::Relaxed);
                log::warn!(
                    "the collector did not run for about {} (since {}: stopped, suspended, or its clock stepped \
                     forward): that time counts against no node or job",
                    crate::liveness::duration(gap_ms),
                    hearth_wire::format_rfc3339(from)
                );
            }
            Reading::WentBack { by_ms } => log::warn!(
                "the clock went back {}: a node last heard from after the time it says now is judged once it \
                 catches up",
                crate::liveness::duration(by_ms)
            ),
        }
    }

    /// Before a write at `now`: an absence no write has recorded yet, which this write
    /// must record (`alerts::start_watching`) before it looks at any deadline, and then
    /// report (`Running::recorded`) once committed. The write takes a reading itself: after
    /// a resume it may come before the ticker's (and after a suspend, the monotonic clock
    /// that would tell the ticker's last reading is old stood still).
    fn absence_to_record(&self, now: i64) -> Option<Absence> {
        self.take_reading(now);
        self.running.pending()
    }

    fn context(&self, now_ms: i64) -> Context<'_> {
        let config = self.config;
        Context {
            now_ms,
            settled_ms: now_ms,
            allow_anonymous: config.allow_anonymous,
            policy: &config.policy,
            watching_since: self.watching_since.load(Ordering::Relaxed),
            channels: &config.channels,
            metrics: &self.metrics,
            alert_stats: &config.alert_stats,
            logins: &self.logins,
            limits: &self.limits,
            agent_dir: config.agent_dir.as_deref(),
            public_url: config.public_url.as_deref(),
            cert_pin: config.cert_pin.as_deref(),
            status_pages: &self.status_pages,
        }
    }
}

/// A request on its way to a pool.
struct Job {
    request: tiny_http::Request,
    parsed: api::Request,
    received: Instant,
}

/// The request thread's ends of the pools.
struct Pools {
    reads: SyncSender<Job>,
    logins: SyncSender<Job>,
    /// Logins whose password was checked, to be written in a batch.
    checked: Receiver<(Job, LoginOutcome)>,
    logins_in_flight: usize,
}

/// A write waiting for the next batch: a request, or a checked login.
struct PendingWrite {
    job: Job,
    login: Option<LoginOutcome>,
}

/// The request thread's loop: sorting requests, batches, the sweep, pruning, and the idle exit.
fn accept(
    server: &tiny_http::Server,
    shared: &Shared,
    mut pools: Pools,
    flusher: &SyncSender<Committed>,
    wake: &SyncSender<()>,
) -> io::Result<()> {
    let (store, config) = (shared.store, shared.config);
    let mut last_request = Instant::now();
    let (mut last_sweep, mut last_prune) = (Instant::now() - SWEEP_EVERY, Instant::now() - PRUNE_EVERY);
    let mut writes = Vec::new();
    let mut sweep_more = false;
    loop {
        config.health.loop_turned();
        // While a login is being checked, look for its outcome often; while a sweep has
        // more to do, only take what has already arrived.
        let wait = if sweep_more {
            Duration::ZERO
        } else if pools.logins_in_flight > 0 {
            Duration::from_millis(2)
        } else {
            SWEEP_EVERY
        };
        if let Some(first) = server.recv_timeout(wait)? {
            last_request = Instant::now();
            sort(first, shared, &mut pools, &mut writes);
            while writes.len() < config.max_batch.max(1) {
                match server.try_recv() {
                    Ok(Some(request)) => sort(request, shared, &mut pools, &mut writes),
                    _ => break,
                }
            }
        }
        while let Ok((job, outcome)) = pools.checked.try_recv() {
            pools.logins_in_flight -= 1;
            writes.push(PendingWrite { job, login: Some(outcome) });
        }
        while !writes.is_empty() {
            let rest = writes.split_off(writes.len().min(config.max_batch.max(1)));
            handle_batch(std::mem::replace(&mut writes, rest), shared, flusher);
        }
        // A sweep starts every second; when more was due than one pass takes, the next
        // pass follows at once, after whatever batch came in meanwhile.
        if sweep_more || last_sweep.elapsed() >= SWEEP_EVERY {
            if !sweep_more {
                last_sweep = Instant::now();
                if let Err(e) = store.grow_ahead() {
                    log::error!("growing the database map: {e}");
                }
                let used = store.read(|txn| txn.database_bytes()).unwrap_or_default();
                let mut counters = lock(&shared.metrics);
                (counters.db_bytes, counters.db_used) = (store.disk_size(), used);
            }
            let writing = shared.writing.begin(&config.clock);
            let now = config.clock.now_ms();
            let away = shared.absence_to_record(now);
            // A pass that only moved deadlines is made durable by the next commit's flush
            // (lost in a crash, it is done again); one that raised alerts is flushed before
            // the worker may send them.
            let swept = contained(|| {
                store
                    .write_unsynced(|txn| {
                        if let Some(absence) = away {
                            alerts::start_watching(txn, now, Some(absence.from))?;
                        }
                        alerts::sweep(txn, now, &config.policy, &config.channels)
                    })
                    .and_then(|swept| if swept.alerts > 0 { store.sync().map(|()| swept) } else { Ok(swept) })
            });
            drop(writing);
            match swept {
                None => {
                    sweep_more = false;
                    log::error!("the sweep panicked (a bug, described above); it runs again in a second");
                }
                Some(Ok(swept)) => {
                    if let Some(absence) = away {
                        shared.running.recorded(absence);
                    }
                    config.health.store_wrote();
                    sweep_more = swept.more;
                    if !swept.more {
                        lock(&shared.metrics).sweeps += 1;
                    }
                    if swept.alerts > 0 {
                        let _ = wake.try_send(());
                    }
                }
                Some(Err(e)) => {
                    sweep_more = false;
                    log::error!("sweep: {e}");
                }
            }
        }
        if config.idle_exit.is_some_and(|idle| last_request.elapsed() >= idle)
            && pools.logins_in_flight == 0
            && !store.read(|txn| txn.busy()).unwrap_or(true)
        {
            log::info!("idle, with no node to watch and no alert to send: exiting (socket activation starts it again)");
            // Connections not yet accepted stay in the socket's backlog for the next start;
            // the ones already accepted are answered first.
            server.stop_accepting();
            while let Some(first) = server.recv_timeout(Duration::from_millis(300))? {
                sort(first, shared, &mut pools, &mut writes);
                for write in std::mem::take(&mut writes) {
                    handle_batch(vec![write], shared, flusher);
                }
            }
            while pools.logins_in_flight > 0 {
                let Ok((job, outcome)) = pools.checked.recv() else { break };
                pools.logins_in_flight -= 1;
                handle_batch(vec![PendingWrite { job, login: Some(outcome) }], shared, flusher);
            }
            return Ok(());
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let now = config.clock.now_ms();
            let cutoff = now - alerts::EVENT_MAX_AGE_MS;
            let pruned = store.write(|txn| {
                let credentials = txn.prune_credentials(now, now - PRUNE_TOKENS_MS)?;
                Ok((txn.prune_events(cutoff)?, credentials, txn.prune_audit(now - store::AUDIT_MAX_AGE_MS)?))
            });
            match pruned {
                Ok((events, credentials, audit)) if events + credentials + audit > 0 => {
                    log::info!(
                        "dropped {events} events older than 30 days, {credentials} expired sessions and tokens, \
                         {audit} audit entries older than 90 days"
                    );
                }
                Ok(_) => {}
                Err(e) => log::error!("pruning: {e}"),
            }
        }
    }
}

/// Sends one request where its work is done: a refusal at once, a read or a login to
/// its pool (or a refusal when the pool's queue is full), a write to the next batch.
fn sort(mut request: tiny_http::Request, shared: &Shared, pools: &mut Pools, writes: &mut Vec<PendingWrite>) {
    let received = Instant::now();
    let prepared = request.take_prepared().and_then(|prepared| prepared.downcast::<Prepared>().ok());
    let prepared = match prepared {
        Some(prepared) => *prepared,
        None => read_request(&mut request, shared.config.trust_cloudflare, &shared.warned_forwarded),
    };
    let parsed = match prepared {
        Ok(parsed) => api::Request { seq: shared.requests.fetch_add(1, Ordering::Relaxed) + 1, ..parsed },
        Err(reply) => {
            let path = merged_slashes(request.url().split('?').next().unwrap_or_default());
            let heartbeat =
                [hearth_wire::paths::HEARTBEAT, hearth_wire::paths::HEARTBEAT_SHORT].contains(&path.as_str());
            return answer(shared, request, reply, heartbeat, received);
        }
    };
    let job = Job { request, parsed, received };
    let work = api::work(&job.parsed);
    if work == Work::Login {
        if let Err(wait) = shared.password_checks.take() {
            let message = "too many logins at once; try again in a second";
            let error = ApiError::new(429, "too_many_attempts", message);
            let retry = ((wait + 999) / 1000).max(1).to_string();
            let reply = ApiError { headers: vec![("Retry-After", retry)], ..error }.into_reply();
            return answer(shared, job.request, reply, false, job.received);
        }
    }
    let (queue, refusal) = match work {
        Work::Write => return writes.push(PendingWrite { job, login: None }),
        Work::Read => (&pools.reads, ApiError::new(503, "busy", "the collector is busy answering reads; try again")),
        Work::Login => (&pools.logins, ApiError::new(429, "too_many_attempts", "too many logins at once; try again")),
    };
    match queue.try_send(job) {
        Ok(()) => pools.logins_in_flight += usize::from(work == Work::Login),
        Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
            let refusal = ApiError { headers: vec![("Retry-After", "1".to_owned())], ..refusal };
            let reply = refusal.into_reply_for(&job.parsed.path);
            answer(shared, job.request, reply, false, job.received);
        }
    }
}

/// Runs `work`, and returns `None` if it panicked. No input should make a handler panic;
/// if one does (a bug), its request is answered 500 and the thread every other client
/// needs goes on. The panic itself is logged by the default hook, with where it happened.
fn contained<R>(work: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok()
}

/// Lowers the calling thread's CPU priority (nice 10): reads, password checks and large
/// answers are slow work, and when the cores are busy the request thread and the flusher,
/// which answer heartbeats, go first. (Raising one's own niceness needs no privilege.)
/// Not `SCHED_IDLE`, though its wake-ups favour the request thread more: with two busy
/// processes beside the collector, a starved reader held what the request thread needed
/// (a malloc arena's lock, say) and heartbeats waited over a second (p99 1.16 s, against
/// 35 ms at nice 10). Nor nice -5 for the request thread and the flusher, which needs
/// privilege: it did not lower the mixed load's p99.
fn yield_to_writes() {
    // SAFETY: gettid has no preconditions; setpriority changes only this thread's niceness.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0
    };
    if failed {
        log::debug!("cannot lower a slow thread's priority: {}", std::io::Error::last_os_error());
    }
}

/// A reader thread: answers reads on a read-only snapshot each.
fn read(jobs: &Mutex<Receiver<Job>>, shared: &Shared) {
    yield_to_writes();
    loop {
        let job = match jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // The clock, then the write under way, then the snapshot (`Writing`).
        let now_ms = shared.config.clock.now_ms();
        let ctx = Context { settled_ms: shared.writing.settled(now_ms), ..shared.context(now_ms) };
        let reply = match contained(|| shared.store.read(|txn| api::handle_read(&job.parsed, txn, &ctx))) {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => ApiError::storage(&e).into_reply_for(&job.parsed.path),
            None => ApiError::bug().into_reply_for(&job.parsed.path),
        };
        answer(shared, job.request, reply, false, job.received);
    }
}

/// The login thread: checks each password on a snapshot, and hands the outcome back to
/// the request thread to write.
fn verify(jobs: &Receiver<Job>, shared: &Shared, checked: &SyncSender<(Job, LoginOutcome)>) {
    yield_to_writes();
    while let Ok(job) = jobs.recv() {
        let ctx = shared.context(shared.config.clock.now_ms());
        let outcome = match contained(|| shared.store.read(|txn| Ok(api::verify_login(&job.parsed, txn, &ctx)))) {
            Some(Ok(outcome)) => outcome,
            Some(Err(e)) => LoginOutcome::Refused(ApiError::storage(&e)),
            None => LoginOutcome::Refused(ApiError::bug()),
        };
        if checked.send((job, outcome)).is_err() {
            return;
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
    /// `Store::commits` right after this batch's commit: once it has grown past this, a
    /// later commit's flush has made this one durable.
    commit_no: u64,
}

struct Answer {
    request: tiny_http::Request,
    reply: Reply,
    heartbeat: bool,
}

/// Applies a batch of writes in one write transaction, commits it, and hands the answers to the flusher.
fn handle_batch(batch: Vec<PendingWrite>, shared: &Shared, flusher: &SyncSender<Committed>) {
    let started = Instant::now();
    let writing = shared.writing.begin(&shared.config.clock);
    let now = shared.config.clock.now_ms();
    let away = shared.absence_to_record(now);
    let context = shared.context(now);
    let (jobs, logins): (Vec<Job>, Vec<Option<LoginOutcome>>) =
        batch.into_iter().map(|write| (write.job, write.login)).unzip();
    let committing = Instant::now();
    let mut alerts = 0;
    // Marked for the commit alone: never while this thread waits on the flusher.
    let in_flight = shared.commit_in_flight.start();
    let outcome = contained(|| {
        shared.store.write_unsynced(|txn| {
            if let Some(absence) = away {
                alerts::start_watching(txn, now, Some(absence.from))?;
            }
            let replies = jobs
                .iter()
                .zip(&logins)
                .map(|(job, login)| match login {
                    // A checked login is written with its outcome, on a rerun after the map
                    // grew too: its password is never checked on this thread.
                    Some(outcome) => api::finish_login(outcome.clone(), &job.parsed, txn, &context),
                    None => api::handle(&job.parsed, txn, &context),
                })
                .collect::<Result<Vec<Reply>, _>>();
            alerts = txn.alerts_written();
            replies
        })
    });
    drop((in_flight, writing));
    if outcome.is_none() && jobs.len() > 1 {
        // A request panicked (a bug) and the transaction was abandoned, so nothing of the
        // batch was written: each request runs again in a batch of its own, and only the
        // one that panics is refused.
        for (job, login) in jobs.into_iter().zip(logins) {
            handle_batch(vec![PendingWrite { job, login }], shared, flusher);
        }
        return;
    }
    {
        let mut metrics = lock(&shared.metrics);
        metrics.commit_seconds.observe(committing.elapsed().as_secs_f64());
        metrics.batch_requests.observe(jobs.len() as f64);
    }
    // Any commit after this count makes this batch durable too (`Store::commits`).
    let commit_no = shared.store.commits();
    if let (Some(absence), Some(Ok(_))) = (away, &outcome) {
        shared.running.recorded(absence);
    }
    let replies = match outcome {
        Some(Ok(replies)) => replies,
        Some(Err(e)) => jobs.iter().map(|job| ApiError::storage(&e).into_reply_for(&job.parsed.path)).collect(),
        None => jobs.iter().map(|job| ApiError::bug().into_reply_for(&job.parsed.path)).collect(),
    };
    log::debug!("committed a batch of {}", jobs.len());
    let answers = jobs
        .into_iter()
        .zip(replies)
        .map(|(job, reply)| Answer { heartbeat: api::is_heartbeat(&job.parsed), request: job.request, reply })
        .collect();
    // Only fails if the flusher is gone, which happens only once this thread returns.
    let _ = flusher.send(Committed { answers, alerts, started, commit_no });
}

/// The flusher's loop: takes every committed batch waiting, flushes them all to disk at
/// once, and answers them in order; a failed flush turns every answer into a 500.
fn flush(batches: Receiver<Committed>, shared: &Shared, wake: &SyncSender<()>) {
    while let Ok(first) = batches.recv() {
        let waiting: Vec<Committed> = std::iter::once(first).chain(batches.try_iter()).collect();
        // Under load the request thread is already committing the next batch, and that
        // commit's flush covers these: wait for it rather than flush the file a second time.
        let newest = waiting.last().map_or(0, |b| b.commit_no);
        let covered = shared.commit_in_flight.covers(shared.store, newest);
        let flushed = if covered { Ok(()) } else { shared.store.sync() };
        lock(&shared.metrics).count_flush(covered);
        if let Err(e) = &flushed {
            log::error!("flushing to disk failed; answering those requests with an error: {e}");
        }
        let mut alerts = 0;
        for batch in waiting {
            alerts += batch.alerts;
            for answer in batch.answers {
                let reply = match &flushed {
                    Ok(()) => answer.reply,
                    Err(e) => ApiError::storage(e).into_reply_for(answer.request.url()),
                };
                self::answer(shared, answer.request, reply, answer.heartbeat, batch.started);
            }
        }
        if alerts > 0 && flushed.is_ok() {
            let _ = wake.try_send(());
        }
    }
}

/// Counts `reply`, then sends it (`heartbeat` says whether it answers one): counted
/// first, so a client that reads /metrics after its answer sees it counted.
fn answer(shared: &Shared, request: tiny_http::Request, reply: Reply, heartbeat: bool, since: Instant) {
    {
        let mut metrics = lock(&shared.metrics);
        if heartbeat {
            metrics.count_heartbeat(reply.status);
        }
        metrics.request_seconds.observe(since.elapsed().as_secs_f64());
    }
    shared.responder.send(request, reply, shared.config.io_timeout, shared.config.clock.now_ms());
}

/// Writes answers without letting a client that reads slowly, or never, hold up anyone else.
#[derive(Default)]
struct Responder {
    /// Whether connections may be kept alive (not when the collector exits when idle).
    keep_alive: bool,
    /// Writer threads running, and the bytes they hold.
    writers: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Responder {
    fn send(&self, request: tiny_http::Request, reply: Reply, io_timeout: Duration, now_ms: i64) {
        let head_only = *request.method() == tiny_http::Method::Head;
        let keep_alive = request.keep_alive();
        // A streamed body ends when its connection closes; a collector that exits when
        // idle leaves no connection open that a request could arrive on as it exits.
        if reply.pieces.is_some() || !self.keep_alive {
            keep_alive.refuse();
        }
        let mut out = head(&reply, now_ms, keep_alive.offered());
        let pieces = reply.pieces.as_ref().filter(|_| !head_only).and_then(api::Pieces::take);
        let held = reply.pieces.as_ref().filter(|_| pieces.is_some()).map_or(0, |p| p.held + STREAM_PIECE);
        let body = if head_only { Vec::new() } else { reply.body };
        if out.len() + body.len() <= INLINE_ANSWER && pieces.is_none() {
            out.extend_from_slice(&body);
            return answer_small(request, out, io_timeout);
        }
        // A streamed body holds what it is made from, and one piece at a time.
        let size = out.len() + body.len() + held;
        let over = self.writers.fetch_add(1, Ordering::SeqCst) >= MAX_WRITERS
            || self.bytes.fetch_add(size, Ordering::SeqCst) + size > MAX_WRITER_BYTES;
        let release = {
            let (writers, bytes) = (Arc::clone(&self.writers), Arc::clone(&self.bytes));
            move || {
                writers.fetch_sub(1, Ordering::SeqCst);
                bytes.fetch_sub(size, Ordering::SeqCst);
            }
        };
        if over {
            release();
            log::warn!("too many large answers still being read; refusing one of {size} bytes");
            keep_alive.refuse();
            let busy = ApiError::new(503, "busy", "too many large answers are still being sent; try again");
            let busy = ApiError { headers: vec![("Retry-After", "1".to_owned())], ..busy };
            let busy = encode(&busy.into_reply_for(request.url()), head_only, now_ms, false);
            return answer_small(request, busy, io_timeout);
        }
        let mut writer = AnswerWriter::new(request);
        let spawned = std::thread::Builder::new().name("answer".into()).stack_size(64 << 10).spawn(move || {
            yield_to_writes();
            let deadline = Instant::now() + WRITE_DEADLINE;
            // The head goes out with the body's start, in one write of at most 64 KiB (as
            // `write_by` writes); the rest of the body is not copied.
            let start = body.len().min((64usize << 10).saturating_sub(out.len()));
            out.extend_from_slice(&body[..start]);
            let mut pieces = pieces.into_iter().flatten();
            if writer.write_by(&out, deadline)
                && writer.write_by(&body[start..], deadline)
                && pieces.all(|p| writer.write_by(&p, deadline))
            {
                writer.finish();
            }
            release();
        });
        if let Err(e) = spawned {
            // The closure, writer and counts went with the failed spawn's error (the writer
            // closing its connection): count back by hand.
            self.writers.fetch_sub(1, Ordering::SeqCst);
            self.bytes.fetch_sub(size, Ordering::SeqCst);
            log::warn!("cannot start a thread to send an answer of {size} bytes: {e}");
        }
    }
}

/// Sends an answer of at most `INLINE_ANSWER` bytes from this thread. A connection's first
/// answer fits its empty send buffer, so the write never blocks; after that, answers the
/// client has not read yet may fill the buffer, and then tiny_http hands the answer to the
/// connection's own thread instead (`answer_on_connection`).
fn answer_small(request: tiny_http::Request, out: Vec<u8>, io_timeout: Duration) {
    if let Err((request, out)) = request.answer_on_connection(out, send_queue_empty) {
        let mut writer = AnswerWriter::new(request);
        if writer.write_by(&out, Instant::now() + io_timeout) {
            writer.finish();
        }
    }
}

/// A request's answer being written. Unless `finish` is reached (the answer written whole
/// and flushed), dropping it closes the connection: part of an answer, or none, may have
/// gone out, and nothing may follow on that connection.
struct AnswerWriter {
    writer: Box<dyn io::Write + Send>,
    keep_alive: KeepAlive,
    whole: bool,
}

impl AnswerWriter {
    fn new(request: tiny_http::Request) -> AnswerWriter {
        AnswerWriter { keep_alive: request.keep_alive(), writer: request.into_writer(), whole: false }
    }

    /// Writes `out` 64 KiB at a time, giving up once `deadline` passes: each write may also
    /// wait up to the socket's send timeout, so a client that reads a byte now and then is
    /// still cut off. Whether all of it was written.
    fn write_by(&mut self, out: &[u8], deadline: Instant) -> bool {
        for piece in out.chunks(64 << 10) {
            if let Err(e) = self.writer.write_all(piece) {
                log::debug!("client left before its answer was written: {e}");
                return false;
            }
            if Instant::now() > deadline {
                log::debug!("a client took too long to read its answer; closing the connection");
                return false;
            }
        }
        true
    }

    /// Flushes what was written: the answer is whole once this succeeds.
    fn finish(mut self) {
        match self.writer.flush() {
            Ok(()) => self.whole = true,
            Err(e) => log::debug!("client left before its answer was written: {e}"),
        }
    }
}

impl Drop for AnswerWriter {
    fn drop(&mut self) {
        // Runs before `writer` is dropped, which lets the connection go on.
        if !self.whole {
            self.keep_alive.refuse();
        }
    }
}

/// The answer's bytes: status line, headers, and the body unless `head_only`.
fn encode(reply: &Reply, head_only: bool, now_ms: i64, keep_alive: bool) -> Vec<u8> {
    let mut out = head(reply, now_ms, keep_alive);
    if !head_only && !matches!(reply.status, 204 | 304) {
        out.extend_from_slice(&reply.body);
    }
    out
}

/// The answer's status line and headers, up to the blank line. `Date` is the collector's
/// clock, which the dashboard uses to say how long ago a node was seen. Unless
/// `keep_alive`, the answer says the connection closes after it.
fn head(reply: &Reply, now_ms: i64, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    // A 204 or 304 has no body, and says nothing of one (RFC 9110 8.6: no Content-Length).
    if !matches!(reply.status, 204 | 304) {
        let _ = write!(out, "Content-Type: {}\r\n", reply.content_type);
        // A streamed body has no length known in advance: it ends when the connection closes.
        if reply.pieces.is_none() {
            let _ = write!(out, "Content-Length: {}\r\n", reply.body.len());
        }
    }
    let _ = write!(out, "Date: {}\r\nCache-Control: no-store\r\n", http_date(now_ms));
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (name, value) in &reply.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A request as the connection's thread read it (`read_request`, then `api::prepare`), or the answer refusing it.
type Prepared = Result<api::Request, Reply>;

/// A request path with repeated slashes as one, as nginx takes them: a client configured
/// with a base URL ending in `/` still reaches its route.
fn merged_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    merged
}

/// Reads what the API needs from a request: method, path, credentials and a capped body.
/// `warned` remembers whether the missing `--trust-proxy` was already logged.
fn read_request(
    request: &mut tiny_http::Request,
    trust_cloudflare: bool,
    warned: &AtomicBool,
) -> Result<api::Request, Reply> {
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Put => Method::Put,
        tiny_http::Method::Delete => Method::Delete,
        _ => Method::Other,
    };
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let (path, query) = (merged_slashes(path), query.to_owned());
    let header = |name: &'static str| {
        let found = request.headers().iter().find(|h| h.field.equiv(name));
        found.map(|h| h.value.as_str().trim().to_owned())
    };
    let bearer = header("Authorization")
        // The scheme's name is case-insensitive (RFC 9110): `bearer` is `Bearer`.
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim().to_owned())
        })
        .or_else(|| header("X-Host-Token"))
        // Beacon's agents send their key here (and/or as a bearer token).
        .or_else(|| header("X-API-Key"))
        .filter(|t| !t.is_empty());
    let content_type = header("Content-Type");
    let session = header("Cookie").and_then(|cookies| {
        let named = |name| cookies.split(';').find_map(|c| c.trim().strip_prefix(name)).filter(|c| !c.is_empty());
        // restic-manager's clients send the same session as `rm_session`, the name it gives it.
        named("hearth_session=").or_else(|| named("rm_session=")).map(str::to_owned)
    });
    let forwarded_https = header("X-Forwarded-Proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    // Any header a proxy adds to say whom it relays (nginx's usual X-Real-IP, RFC 7239's
    // Forwarded) makes the request remote, whatever address it came from.
    let forwarded = ["X-Forwarded-For", "CF-Connecting-IP", "X-Real-IP", "Forwarded"]
        .into_iter()
        .any(|name| header(name).is_some())
        || forwarded_https;
    // A Unix socket has no remote address, and counts as local.
    let local = !forwarded && request.remote_addr().is_none_or(|a| a.ip().is_loopback());
    if forwarded && !trust_cloudflare && !warned.swap(true, Ordering::Relaxed) {
        log::warn!(
            "requests arrive through a proxy (X-Forwarded-For, CF-Connecting-IP, X-Real-IP, Forwarded or \
             X-Forwarded-Proto), but \
             --trust-proxy is not set: every client looks like the proxy's address, and login limits count them \
             as one. Start with --trust-proxy cloudflare if cloudflared is in front"
        );
    }
    // Without --trust-proxy, these headers are anyone's to write, and are ignored.
    let relayed = header("CF-Connecting-IP").filter(|_| trust_cloudflare).and_then(|ip| ip.parse().ok());
    let trusted_client = relayed.is_some();
    let https = trust_cloudflare && forwarded_https;
    let host = header("Host");
    let client = relayed.or_else(|| request.remote_addr().map(|a| a.ip()));
    // A ping's body is its run's log, of any text, up to 100 KB as Healthchecks takes it.
    let ping = path.starts_with("/ping/");
    let limit = if ping { MAX_PING_BODY } else { MAX_BODY };
    if request.body_length().is_some_and(|len| len > limit) {
        return Err(ApiError::body_too_large_than(limit).into_reply_for(&path));
    }
    let mut body = Vec::new();
    let read = request.as_reader().take(limit as u64 + 1).read_to_end(&mut body);
    if let Err(e) = read {
        let (status, code) = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => (408, "request_timeout"),
            _ => (400, "invalid_body"),
        };
        return Err(ApiError::new(status, code, format!("could not read the request body: {e}")).into_reply_for(&path));
    }
    if body.len() > limit {
        return Err(ApiError::body_too_large_than(limit).into_reply_for(&path));
    }
    let body = if ping {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        String::from_utf8(body).map_err(|_| {
            ApiError::new(400, "invalid_json", "the body is not UTF-8 text; send JSON").into_reply_for(&path)
        })?
    };
    Ok(api::Request {
        method,
        path,
        query,
        bearer,
        session,
        content_type,
        host,
        https,
        forwarded_https,
        forwarded,
        trusted_client,
        body,
        local,
        seq: 0,
        client,
        beat: Default::default(),
    })
}

/// An HTTP date (RFC 9110 IMF-fixdate), such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
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
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        // The phrase may be empty (RFC 9112), which is better than a wrong one.
        _ => "",
    }
}

/// Whether a socket holds nothing written before and not yet sent and acknowledged: then an
/// answer up to `INLINE_ANSWER` fits its send buffer, as on a fresh connection.
fn send_queue_empty(fd: RawFd) -> bool {
    let mut queued: libc::c_int = 0;
    // SAFETY: tiny_http asks only while the request holds the socket open; TIOCOUTQ
    // (SIOCOUTQ for sockets) stores the length of the send queue in `queued`, nothing more.
    let asked = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    asked == 0 && queued == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(request: tiny_http::TestRequest, trust_cloudflare: bool) -> Result<api::Request, Reply> {
        let mut request: tiny_http::Request = request.into();
        read_request(&mut request, trust_cloudflare, &AtomicBool::new(false))
    }

    fn header(text: &str) -> tiny_http::Header {
        text.parse().unwrap()
    }

    #[test]
    fn requests_are_read_into_what_the_api_needs() {
        let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let base = || {
            tiny_http::TestRequest::new()
                .with_method(tiny_http::Method::Post)
                .with_path("/api/agent/heartbeat?x=1")
                .with_remote_addr(peer)
                .with_body("{}")
        };
        let r = parsed(base().with_header(header("Authorization: Bearer  hag_abc ")), false).unwrap();
        assert_eq!((r.method, r.path.as_str(), r.query.as_str()), (Method::Post, "/api/agent/heartbeat", "x=1"));
        assert_eq!(r.bearer.as_deref(), Some("hag_abc"));
        assert!(r.local && !r.forwarded && !r.https && r.client == Some(peer.ip()));
        let r = parsed(base().with_header(header("X-Host-Token: jwt")), false).unwrap();
        assert_eq!(r.bearer.as_deref(), Some("jwt"));
        let r = parsed(base().with_header(header("X-API-Key: usr_k")), false).unwrap();
        assert_eq!(r.bearer.as_deref(), Some("usr_k"));
        let r = parsed(base().with_header(header("Cookie: a=b; hearth_session=hs_x")), false).unwrap();
        assert_eq!(r.session.as_deref(), Some("hs_x"));
        let r = parsed(base().with_header(header("Cookie: rm_session=hs_y")), false).unwrap();
        assert_eq!(r.session.as_deref(), Some("hs_y"), "restic-manager's name for it");
        let r = parsed(base().with_header(header("Cookie: rm_session=hs_y; hearth_session=hs_x")), false).unwrap();
        assert_eq!(r.session.as_deref(), Some("hs_x"));
        let r = parsed(base().with_header(header("Cookie: xrm_session=hs_y; hearth_session=")), false).unwrap();
        assert_eq!(r.session, None);
        // A proxy's headers: not local; believed only with --trust-proxy.
        let proxied = || {
            base().with_header(header("CF-Connecting-IP: 198.51.100.7")).with_header(header("X-Forwarded-Proto: https"))
        };
        let untrusted = parsed(proxied(), false).unwrap();
        assert!(!untrusted.local && untrusted.forwarded && untrusted.forwarded_https && !untrusted.https);
        assert_eq!((untrusted.client, untrusted.trusted_client), (Some(peer.ip()), false));
        let trusted = parsed(proxied(), true).unwrap();
        assert!(trusted.https && trusted.trusted_client);
        assert_eq!(trusted.client, Some("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn bodies_that_are_not_text_or_too_large_are_refused() {
        let request = || tiny_http::TestRequest::new().with_method(tiny_http::Method::Post).with_path("/x");
        assert!(parsed(request().with_body("\u{0}\u{ff}"), false).is_ok(), "NUL and ÿ are UTF-8");
        let huge: &'static str = Box::leak("x".repeat(MAX_BODY + 1).into_boxed_str());
        let refused = parsed(request().with_body(huge), false).unwrap_err();
        assert_eq!(refused.status, 413);
        // Refused before the body is read, in the shape of the route's own clients (Wrenn's).
        let wrenn = tiny_http::TestRequest::new().with_method(tiny_http::Method::Post).with_path("/v1/hosts/register");
        let refused = parsed(wrenn.with_body(huge), false).unwrap_err();
        let body = String::from_utf8(refused.body.clone()).unwrap();
        assert!(refused.status == 413 && body.starts_with(r#"{"error":{"code""#), "{body}");
    }

    #[test]
    fn a_change_cursor_never_passes_a_write_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        std::fs::write(&file, "1000000").unwrap();
        let clock = crate::clock::Clock::File(file.clone());
        let writing = Writing::new();
        assert_eq!(writing.settled(1_000_000), 1_000_000, "with no write, the clock");
        let mark = writing.begin(&clock);
        std::fs::write(&file, "1005000").unwrap();
        // A snapshot opened now may lack the write begun at 1,000,000, however long it takes.
        assert_eq!(writing.settled(1_005_000), 1_000_000);
        drop(mark);
        assert_eq!(writing.settled(1_005_000), 1_005_000, "once it is committed, the clock again");
    }

    #[test]
    fn slow_threads_give_way_to_the_request_thread() {
        let niceness = std::thread::spawn(|| {
            yield_to_writes();
            // SAFETY: as in `yield_to_writes`; getpriority reads this thread's niceness.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        });
        assert_eq!(niceness.join().unwrap(), 10);
        // SAFETY: as above, for this (the test's own) thread, which is untouched.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert!(own < 10, "only the thread that asked gave way");
    }

    /// One request that panics (a bug) is answered 500, and the heartbeat batched with it
    /// is saved and answered 200: the transaction they shared runs again without it.
    #[test]
    fn a_request_that_panics_costs_only_its_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&store::StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        let config = ServeConfig {
            allow_anonymous: true,
            anonymous_per_minute: 100,
            mints_per_hour: 100,
            max_batch: 256,
            io_timeout: Duration::from_secs(5),
            policy: Policy::default(),
            watching_since: 0,
            channels: Arc::new(Channels::default()),
            clock: Clock::from_env(),
            alert_stats: Arc::new(Stats::default()),
            idle_exit: None,
            trust_cloudflare: false,
            agent_dir: None,
            public_url: None,
            health: Arc::new(crate::watchdog::Health::default()),
            cert_pin: None,
        };
        let shared = Shared {
            store: &store,
            config: &config,
            metrics: Mutex::default(),
            logins: Mutex::default(),
            limits: RateLimits::new(100, 100),
            password_checks: PasswordChecks::default(),
            responder: Responder::default(),
            warned_forwarded: Arc::new(AtomicBool::new(false)),
            requests: AtomicU64::new(0),
            commit_in_flight: InFlight::default(),
            writing: Writing::new(),
            status_pages: Default::default(),
            watching_since: AtomicI64::new(0),
            running: crate::clock::Running::new(0),
        };
        let write = |path: &str, body: String| {
            let mut request: tiny_http::Request = tiny_http::TestRequest::new()
                .with_method(tiny_http::Method::Post)
                .with_path(path)
                .with_remote_addr("127.0.0.1:5000".parse().unwrap())
                .with_header(header("Content-Type: application/json"))
                .with_body(Box::leak(body.into_boxed_str()))
                .into();
            let parsed = read_request(&mut request, false, &AtomicBool::new(false)).unwrap();
            PendingWrite { job: Job { request, parsed, received: Instant::now() }, login: None }
        };
        let node = "6f1c2d4e-8a9b-4c0d-9e1f-2a3b4c5d6e7f";
        let beat = include_str!("../../xtask/bench/heartbeat.json")
            .replace("NODE_ID", node)
            .replace("TIMESTAMP", "2026-11-20T10:00:00Z")
            .replace("SEQ", "1");
        let (flusher, committed) = std::sync::mpsc::sync_channel(8);
        let batch = vec![write("/test/panic", "{}".into()), write(hearth_wire::paths::HEARTBEAT, beat)];
        handle_batch(batch, &shared, &flusher);
        let statuses: Vec<u16> = committed.try_iter().flat_map(|b| b.answers).map(|a| a.reply.status).collect();
        assert_eq!(statuses, [500, 200], "answered in order, each in a batch of its own");
        assert!(store.read(|txn| txn.node(node)).unwrap().is_some(), "the heartbeat was saved");
    }

    /// Wrenn's heartbeat answers 204: its status line must not say "Internal Server Error".
    #[test]
    fn status_lines_name_their_own_status() {
        let text = |status| {
            let reply = Reply { status, ..ApiError::new(400, "x", "y").into_reply() };
            String::from_utf8(encode(&reply, false, 0, false)).unwrap()
        };
        assert!(text(204).starts_with("HTTP/1.1 204 No Content\r\n"), "{}", text(204));
        // RFC 9110 8.6: a 204 carries no Content-Length (nor a body, nor its type).
        assert!(text(204).ends_with("\r\n\r\n") && !text(204).contains("Content-"), "{}", text(204));
        assert!(text(400).contains("Content-Length: "), "{}", text(400));
        assert!(text(299).starts_with("HTTP/1.1 299 \r\n"), "an unknown status gets no phrase: {}", text(299));
        for status in [200, 201, 204, 302, 304, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 429, 503, 507] {
            assert_ne!(reason(status), "", "{status}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_709_210_096_999), "Thu, 29 Feb 2024 12:34:56 GMT");
    }

    #[test]
    fn answers_say_whether_they_close_and_carry_the_collectors_date() {
        let reply = ApiError::new(503, "busy", "try again").into_reply();
        let text = String::from_utf8(encode(&reply, false, 0, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let kept = String::from_utf8(encode(&reply, false, 0, true)).unwrap();
        assert!(!kept.to_ascii_lowercase().contains("connection:"), "HTTP/1.1 keeps alive by default: {kept}");
        let head = String::from_utf8(encode(&reply, true, 0, false)).unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 57"), "{head}");
    }
}
