//! `serve`: open the store, start the alert worker, and hand the socket to `http`.

use super::channels::load_channels;
use super::{open_store, Failure};
use crate::alerts::{self, worker};
use crate::cli::Serve;
use crate::clock::Clock;
use crate::http::{self, ServeConfig};
use crate::listen::Listener;
use crate::liveness::Policy;
use crate::store::setting;
use crate::watchdog::{Health, Watchdog};
use std::io::Write;
use std::sync::Arc;

/// glibc gives threads malloc arenas of their own, up to eight per core; with a thread
/// per connection and per large answer, freed memory then stays scattered across them
/// and resident. And once a large block (a page of the node list, a scrape) is freed,
/// glibc raises its threshold for giving such blocks their own mapping, so later ones
/// come from the heap, which does not shrink. A fixed 256 KiB threshold (large blocks
/// are mapped, and unmapped when freed) keeps the collector within its unit's MemoryMax.
/// Arenas are capped at eight, not two: with two, the request thread shared an arena's
/// lock with the reader threads, which run at nice 10, and waited whenever one was
/// preempted holding it (heartbeat p99 beside two dashboards reading without pause:
/// 10 to 12 ms with two arenas, 7 to 8 ms with eight; at 100,000 nodes the mixed load's
/// peak anonymous memory stayed at 105 MiB). (musl has no arenas, and always maps
/// large blocks.)
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc tunables; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 8);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Every connection is a file descriptor, and the usual soft limit (1024) would refuse
/// connections long before memory runs short: take the hard limit, as Go servers do.
fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the one struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!("cannot raise the open file limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}

/// Claims the data directory for this `serve` while the returned file is open (an
/// exclusive `flock` on `serve.lock`, let go when the process ends however it ends): two
/// collectors on one store would both sweep and send, and each would say that the
/// channels file is its own. The file is only read (one root left behind still serves);
/// where it cannot be had or locked at all, a warning, and `serve` goes on as before.
fn claim(dir: &std::path::Path) -> Result<Option<std::fs::File>, Failure> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::DirBuilderExt;
    let path = dir.join("serve.lock");
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    let opened = std::fs::File::open(&path).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)
        }
        _ => Err(e),
    });
    let cannot = |why: std::io::Error| {
        log::warn!("cannot claim {} ({why}): nothing stops a second serve on this data directory", path.display());
        Ok(None)
    };
    let file = match opened {
        Ok(file) => file,
        Err(e) => return cannot(e),
    };
    // SAFETY: flock takes the descriptor of a file this function holds open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Failure::Failed(format!(
                "another hearth-collector serve is running on {}: stop it first (two would both watch the \
                 nodes and send alerts), or give this one its own --data-dir",
                dir.display()
            )));
        }
        return cannot(error);
    }
    Ok(Some(file))
}

pub(super) fn run(serve: &Serve) -> Result<(), Failure> {
    raise_file_limit();
    limit_malloc_arenas();
    let (channels, channels_file) = load_channels(serve.alerts.as_deref())?;
    let channels = Arc::new(channels);
    let _serving = claim(&serve.data_dir)?;
    let store = Arc::new(open_store(&serve.data_dir, serve.max_db_mb)?);
    let clock = Clock::from_env();
    if let Some(dir) = serve.agent_dir.as_deref().filter(|dir| !dir.is_dir()) {
        log::warn!(
            "--agent-dir {} is not a directory: /install.sh cannot hand out the agent until it is (put there the \
             agent directory `cargo xtask dist` writes, DIR/linux/<uname -m>/hearth-agent), or leave the flag out",
            dir.display()
        );
    }
    let policy = Policy {
        grace_secs: serve.grace_secs,
        min_down_secs: serve.min_down_secs,
        remind_every_secs: serve.remind_hours.map(|h| h * 3600),
        pending_alert_secs: serve.pending_alert_secs,
    };
    if let Some(warning) = policy.short_grace_warning(crate::model::DEFAULT_INTERVAL_SECS) {
        log::warn!("{warning}");
    }
    // Before the first sweep: no node is blamed for the time this collector was not running.
    let watching_since = clock.now_ms();
    store
        .write(|txn| {
            alerts::on_start(txn, watching_since, &policy)?;
            match &channels_file {
                Some(path) => txn.put_setting(setting::CHANNELS_FILE, &path.to_string_lossy().into_owned()),
                None => txn.put_setting(setting::CHANNELS_FILE, &String::new()),
            }
        })
        .map_err(|e| Failure::store(&serve.data_dir, e))?;
    let listener = match Listener::from_systemd()? {
        Some(listener) => listener,
        None => Listener::bind(&serve.listen)?,
    };
    // Empty on a Unix socket without --public-url: the CLI then says the default address.
    // (`--public-url` comes without a trailing `/`: `cli::base_url`.)
    let url = serve.public_url.clone().or_else(|| listener.local_url()).unwrap_or_default();
    store.write(|txn| txn.put_setting(setting::PUBLIC_URL, &url)).map_err(|e| Failure::store(&serve.data_dir, e))?;
    println!("listening on {listener}");
    let _ = std::io::stdout().flush();
    log::info!(
        "serving {} ({}anonymous heartbeats)",
        store.path().display(),
        if serve.allow_anonymous { "accepting " } else { "refusing " }
    );
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let alert_stats = Arc::new(worker::Stats::default());
    let worker = worker::Worker {
        store: store.clone(),
        channels: channels.clone(),
        clock: clock.clone(),
        stats: alert_stats.clone(),
    };
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || worker.run(woken))
        .map_err(|e| Failure::Failed(format!("cannot start the alert worker: {e}")))?;
    let health = Arc::new(Health::default());
    let watchdog = Watchdog {
        url: serve.watchdog_url.clone(),
        every: std::time::Duration::from_secs(serve.watchdog_secs),
        channels: channels.clone(),
        health: health.clone(),
    };
    if watchdog.wanted() {
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watchdog.run())
            .map_err(|e| Failure::Failed(format!("cannot start the watchdog: {e}")))?;
    }
    let config = ServeConfig {
        allow_anonymous: serve.allow_anonymous,
        anonymous_per_minute: serve.anonymous_per_minute,
        mints_per_hour: serve.mints_per_hour,
        max_batch: serve.max_batch,
        io_timeout: serve.io_timeout,
        policy,
        watching_since,
        channels,
        clock,
        alert_stats,
        idle_exit: serve.idle_exit,
        trust_cloudflare: serve.trust_cloudflare,
        agent_dir: serve.agent_dir.clone(),
        public_url: serve.public_url.clone(),
        health: health.clone(),
        cert_pin: serve.cert_pin.clone(),
    };
    http::serve(listener, &store, &config, &wake).map_err(|e| Failure::Failed(format!("the server stopped: {e}")))
}
