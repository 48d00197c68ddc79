//! What each command does: `serve`, and the administration commands that share its data directory.

use crate::alerts;
use crate::alerts::config::{self as alert_config, Channels};
use crate::alerts::{channel, worker};
use crate::cli::{Command, Serve, HELP};
use crate::clock::Clock;
use crate::http::{self, ServeConfig};
use crate::listen::Listener;
use crate::liveness::Policy;
use crate::model::{AlertRecord, ApiKeyRecord, AuditRecord, EnrollTokenRecord, EventKind, NodeRecord, UserRecord};
use crate::secret::{self, API_KEY_PREFIX, ENROLL_PREFIX};
use crate::store::{setting, Store, StoreConfig, DEFAULT_MAX_MAP};
use hearth_wire::format_rfc3339;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn now_ms() -> i64 {
    Clock::System.now_ms()
}

/// A failure, worded for the operator: what failed and, where it helps, what to do.
pub type Failure = String;

pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Help => print!("{HELP}"),
        Command::Version => println!("hearth-collector {}", env!("CARGO_PKG_VERSION")),
        Command::Serve(serve) => return run_serve(&serve),
        Command::TokenCreate { data_dir, ttl, name, tags, node } => {
            let store = open_store(&data_dir, None)?;
            let token = secret::new_secret(ENROLL_PREFIX).map_err(|e| format!("cannot get random bytes: {e}"))?;
            let now = now_ms();
            let record = EnrollTokenRecord {
                id: secret::new_id().map_err(|e| format!("cannot get random bytes: {e}"))?,
                name,
                tags,
                node_id: node.clone(),
                hostname: None,
                created_by: Some("cli".into()),
                created_at: now,
                expires_at: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
                used_at: None,
                used_by: None,
            };
            store
                .write(|txn| {
                    if let Some(id) = &node {
                        if txn.node(id)?.is_none() {
                            return Ok(Err(format!("no node has the id {id}; see `hearth-collector nodes`")));
                        }
                    }
                    txn.put_enroll_token(&secret::hash(&token), &record)?;
                    let detail = format!("enrolment token, valid until {}", format_rfc3339(record.expires_at));
                    txn.put_audit(cli_audit("token_minted", &record.id, detail)).map(Ok)
                })
                .map_err(|e| e.to_string())??;
            println!("{token}");
            eprintln!(
                "enrolment token {} is valid until {}; on the node run: hearth-agent enroll --token <token> --collector <URL>",
                record.id,
                format_rfc3339(record.expires_at)
            );
        }
        Command::ApiKeyCreate { data_dir, name, user } => {
            let store = open_existing_store(&data_dir)?;
            let key = secret::new_secret(API_KEY_PREFIX).map_err(|e| format!("cannot get random bytes: {e}"))?;
            let id = secret::new_id().map_err(|e| format!("cannot get random bytes: {e}"))?;
            let record = ApiKeyRecord { id, name, user: Some(user.clone()), created_at: now_ms() };
            let role = store
                .write(|txn| {
                    let Some(found) = txn.user(&user)? else { return Ok(None) };
                    txn.put_api_key(&secret::hash(&key), &record)?;
                    txn.put_audit(cli_audit("apikey_created", &user, format!("API key {}", record.id)))?;
                    Ok(Some(found.role()))
                })
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("no user is named {user}; add one with `hearth-collector user add {user} --role viewer`")
                })?;
            println!("{key}");
            eprintln!("API key {} acts as {user} ({}); it is shown only now", record.id, role.as_str());
        }
        Command::UserAdd { data_dir, name, role } => {
            let store = open_store(&data_dir, None)?;
            if store.read(|txn| txn.user(&name)).map_err(|e| e.to_string())?.is_some() {
                return Err(format!("a user named {name} already exists; see `hearth-collector user list`"));
            }
            let user = UserRecord {
                password: secret::hash_password(&read_password(&name)?)?,
                name: name.clone(),
                role: role.as_str().into(),
                created_at: now_ms(),
            };
            let added = store
                .write(|txn| {
                    if txn.user(&name)?.is_some() {
                        return Ok(false);
                    }
                    txn.put_user(&user)?;
                    txn.put_audit(cli_audit("user_added", &name, format!("role {}", role.as_str())))?;
                    Ok(true)
                })
                .map_err(|e| e.to_string())?;
            if !added {
                return Err(format!("a user named {name} already exists; see `hearth-collector user list`"));
            }
            println!("user {name} added as {}", role.as_str());
        }
        Command::UserPasswd { data_dir, name } => {
            let store = open_existing_store(&data_dir)?;
            if store.read(|txn| txn.user(&name)).map_err(|e| e.to_string())?.is_none() {
                return Err(no_user(&name));
            }
            let password = secret::hash_password(&read_password(&name)?)?;
            let ended = store
                .write(|txn| {
                    let Some(mut user) = txn.user(&name)? else { return Ok(None) };
                    user.password.clone_from(&password);
                    txn.put_user(&user)?;
                    let ended = txn.delete_sessions_of(&name)?;
                    txn.put_audit(cli_audit("password_changed", &name, format!("{ended} session(s) ended")))?;
                    Ok(Some(ended))
                })
                .map_err(|e| e.to_string())?
                .ok_or_else(|| no_user(&name))?;
            println!("password of {name} changed; {ended} session(s) ended");
        }
        Command::UserRemove { data_dir, name } => {
            let store = open_existing_store(&data_dir)?;
            let removed = store
                .write(|txn| {
                    if txn.user(&name)?.is_none() {
                        return Ok(false);
                    }
                    txn.delete_user(&name)?;
                    txn.put_audit(cli_audit("user_removed", &name, "with their sessions and API keys".into()))?;
                    Ok(true)
                })
                .map_err(|e| e.to_string())?;
            if !removed {
                return Err(no_user(&name));
            }
            println!("user {name} removed, with their sessions and API keys");
        }
        Command::UserList { data_dir } => {
            let store = open_existing_store(&data_dir)?;
            let users = store.read(|txn| txn.users()).map_err(|e| e.to_string())?;
            if users.is_empty() {
                eprintln!("no users yet; add one with `hearth-collector user add NAME --role admin`");
            }
            for user in users {
                println!("{:<24} {:<9} added {}", user.name, user.role().as_str(), format_rfc3339(user.created_at));
            }
        }
        Command::AlertTest { data_dir, alerts, channel } => {
            return alert_test(&data_dir, alerts.as_deref(), channel.as_deref())
        }
        Command::NodeSet { data_dir, node_id, grace_secs } => {
            let store = open_existing_store(&data_dir)?;
            let found = store
                .write(|txn| {
                    let Some(mut node) = txn.node(&node_id)? else { return Ok(false) };
                    let previous = node.deadline;
                    node.grace_secs = grace_secs;
                    // The running collector judges the node again at its next sweep, with its own settings.
                    if previous.is_some() {
                        node.deadline = Some(now_ms());
                    }
                    txn.save_node(&node, previous)?;
                    Ok(true)
                })
                .map_err(|e| e.to_string())?;
            if !found {
                return Err(format!("no node has the id {node_id}; see `hearth-collector nodes`"));
            }
            match grace_secs {
                Some(secs) => println!("node {node_id} now has {secs} s of grace"),
                None => println!("node {node_id} uses the default grace again"),
            }
        }
        Command::Nodes { data_dir, json, grace_secs, min_down_secs } => {
            let store = open_existing_store(&data_dir)?;
            let (nodes, served_with) = store
                .read(|txn| Ok((txn.nodes()?, txn.setting::<Policy>(setting::POLICY)?)))
                .map_err(|e| e.to_string())?;
            // Judged as `serve` judges them: with the settings it last ran with.
            let mut policy = served_with.unwrap_or_default();
            policy.grace_secs = grace_secs.or(policy.grace_secs);
            policy.min_down_secs = min_down_secs.or(policy.min_down_secs);
            let mut out = std::io::stdout().lock();
            let now = Clock::from_env().now_ms(); // the clock `serve` reads
            let printed = if json {
                let views: Vec<_> = nodes.iter().map(|n| n.view(now, policy.grace_ms(n))).collect();
                writeln!(out, "{}", miniserde::json::to_string(&views))
            } else {
                out.write_all(node_table(&nodes, now, &policy).as_bytes())
            };
            // A closed pipe (`| head`) is not a failure.
            if let Err(e) = printed {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(format!("cannot write to stdout: {e}"));
                }
            }
        }
    }
    Ok(())
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

fn run_serve(serve: &Serve) -> Result<(), Failure> {
    raise_file_limit();
    let (channels, channels_file) = load_channels(serve.alerts.as_deref())?;
    let channels = Arc::new(channels);
    let store = Arc::new(open_store(&serve.data_dir, serve.max_db_mb)?);
    let clock = Clock::from_env();
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
    store
        .write(|txn| {
            alerts::on_start(txn, clock.now_ms(), &policy)?;
            match &channels_file {
                Some(path) => txn.put_setting(setting::CHANNELS_FILE, &path.to_string_lossy().into_owned()),
                None => txn.put_setting(setting::CHANNELS_FILE, &String::new()),
            }
        })
        .map_err(|e| format!("cannot write to the store in {}: {e}", serve.data_dir.display()))?;
    let listener = match Listener::from_systemd()? {
        Some(listener) => listener,
        None => Listener::bind(&serve.listen)?,
    };
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
        .map_err(|e| format!("cannot start the alert worker: {e}"))?;
    let config = ServeConfig {
        allow_anonymous: serve.allow_anonymous,
        anonymous_per_minute: serve.anonymous_per_minute,
        max_batch: serve.max_batch,
        io_timeout: serve.io_timeout,
        policy,
        channels,
        clock,
        alert_stats,
        idle_exit: serve.idle_exit,
        trust_cloudflare: serve.trust_cloudflare,
        agent_dir: serve.agent_dir.clone(),
        public_url: serve.public_url.clone(),
    };
    http::serve(listener, &store, &config, &wake).map_err(|e| format!("the server stopped: {e}"))
}

fn no_user(name: &str) -> Failure {
    format!("no user is named {name}; see `hearth-collector user list`")
}

/// An audit entry for something done at the collector's own command line.
fn cli_audit(action: &str, target: &str, detail: String) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: now_ms(),
        actor: "cli".into(),
        action: action.into(),
        target: Some(target.into()),
        client: "local".into(),
        detail,
    }
}

/// A new password: asked for twice on a terminal (without echo), else one line of stdin.
fn read_password(name: &str) -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("password for {name}: "))?;
        if prompt_hidden("again: ")? != first {
            return Err("the two passwords differ; nothing was changed".into());
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err("the password must be 8 to 1024 characters long; nothing was changed".into());
    }
    Ok(password)
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String, Failure> {
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    eprint!("{prompt}");
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a descriptor that is a terminal.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is stdin, which the caller checked is a terminal; `saved` is a valid termios.
    let have_terminal = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_terminal {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above, with a termios copied from the terminal's own.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have_terminal {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads the channels file; without one named, /etc/hearth/alerts.conf if it exists.
/// Also returns the file read, as an absolute path.
fn load_channels(path: Option<&Path>) -> Result<(Channels, Option<PathBuf>), Failure> {
    let (path, explicit) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_ALERTS), false),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            log::info!("no alert channels ({} does not exist): events are recorded, nobody is told", path.display());
            return Ok((Channels::default(), None));
        }
        Err(e) => {
            return Err(format!(
                "cannot read the alert channels file {}: {e} (name another with --alerts FILE or HEARTH_ALERTS)",
                path.display()
            ))
        }
    };
    let channels = alert_config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    log::info!("{} alert channel(s) from {}", channels.list.len(), path.display());
    Ok((channels, Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))))
}

const DEFAULT_ALERTS: &str = "/etc/hearth/alerts.conf";

/// Sends a test notification to each channel and prints what it answered. The channels
/// file is the one named (`--alerts`, `HEARTH_ALERTS`), else the one the last `serve` on
/// `data_dir` read, else the default.
fn alert_test(data_dir: &Path, path: Option<&Path>, only: Option<&str>) -> Result<(), Failure> {
    let served: Option<PathBuf> = match path {
        Some(_) => None,
        None if Store::exists(data_dir) => open_existing_store(data_dir)?
            .read(|txn| txn.setting::<String>(setting::CHANNELS_FILE))
            .map_err(|e| e.to_string())?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        None => None,
    };
    let (channels, read) = load_channels(path.or(served.as_deref()))?;
    let chosen: Vec<_> = channels.list.iter().filter(|c| only.is_none_or(|name| c.name == name)).collect();
    let file = read.map_or_else(|| format!("{DEFAULT_ALERTS} does not exist"), |p| p.display().to_string());
    if chosen.is_empty() {
        return Err(match only {
            Some(name) => format!("no channel is named `{name}` in {file}"),
            None => format!(
                "no channels are configured ({file}); name the channels file with --alerts FILE or \
                 HEARTH_ALERTS, and see the README's \"Alerts\" section"
            ),
        });
    }
    eprintln!("channels from {file}");
    let alert = AlertRecord {
        id: 0,
        kind: EventKind::Test,
        node_id: "00000000-0000-4000-8000-000000000000".into(),
        name: "hearth-collector".into(),
        hostname: "hearth-collector".into(),
        tags: Vec::new(),
        check: None,
        checks: None,
        detail: "this is a test notification from `hearth-collector alert test`".into(),
        at: now_ms(),
        down_since: None,
        deliveries: Vec::new(),
    };
    let mut failed = 0;
    for c in chosen {
        match worker::send(&channel::build(c, &alert)) {
            Ok(answer) => println!("{}: {answer}", c.name),
            Err(error) => {
                println!("{}: FAILED: {error}", c.name);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} channel(s) did not accept the test notification"));
    }
    Ok(())
}

/// Opens the store of a command that needs one already there: never creates one.
fn open_existing_store(dir: &Path) -> Result<Store, Failure> {
    if !Store::exists(dir) {
        return Err(format!(
            "no store in {}: is that the collector's data directory? Name it with --data-dir DIR \
             (or HEARTH_DATA_DIR); `serve` creates the store",
            dir.display()
        ));
    }
    open_store(dir, None)
}

fn open_store(dir: &Path, max_db_mb: Option<usize>) -> Result<Store, Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    let max_map = max_db_mb.map_or(DEFAULT_MAX_MAP, |mb| mb.saturating_mul(1 << 20));
    Store::open(&StoreConfig::new(dir, max_map)).map_err(|e| {
        format!("cannot open the store in {}: {e} (is the directory writable by this user?)", dir.display())
    })
}

/// The node table for a terminal.
pub fn node_table(nodes: &[NodeRecord], now: i64, policy: &Policy) -> String {
    let mut rows =
        vec![["NAME", "STATUS", "LAST SEEN", "SEQ", "HOSTNAME", "ARCH", "VERSION", "NODE ID"].map(String::from)];
    for node in nodes {
        let view = node.view(now, policy.grace_ms(node));
        let last_seen = node.last_seen.map_or_else(|| "never".to_owned(), |seen| ago(now - seen));
        rows.push([
            view.name,
            view.status.to_owned(),
            last_seen,
            view.seq.map_or_else(|| "-".into(), |s| s.to_string()),
            view.hostname,
            view.arch.unwrap_or_else(|| "-".into()),
            view.agent_version.unwrap_or_else(|| "-".into()),
            view.node_id,
        ]);
    }
    let widths: Vec<usize> = (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// "12s ago", "5m ago", "3h ago", "2d ago".
fn ago(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        for (ms, text) in
            [(0, "0s ago"), (59_999, "59s ago"), (60_000, "1m ago"), (7_200_000, "2h ago"), (-5, "0s ago")]
        {
            assert_eq!(ago(ms), text);
        }
    }
}
