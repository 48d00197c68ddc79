//! What each command does: `serve` (`serve.rs`), and the administration commands that
//! share its data directory: people and their keys (`people.rs`), nodes and enrolment
//! tokens (`nodes.rs`), fleet keys (`fleetkeys.rs`), the alert channels (`channels.rs`),
//! scheduled jobs (`jobs.rs`), maintenance windows, silences and acknowledgements
//! (`holds.rs`), and public status pages (`pages.rs`). Each command is one function; each
//! failure says what failed and how the process exits.

mod channels;
mod fleetkeys;
mod holds;
mod jobs;
mod nodes;
mod pages;
mod people;
mod serve;

use crate::cli::{Command, HELP};
use crate::clock::Clock;
use crate::maintenance::HoldKind;
use crate::model::AuditRecord;
use crate::store::{Store, StoreConfig, DEFAULT_MAX_MAP};
use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Why a command failed, worded for the operator: what failed and, where it helps, what to do.
#[derive(Debug)]
pub enum Failure {
    /// The configuration is wrong (the channels file, a setting's value): exit 2, like bad usage.
    Config(String),
    /// The store in `dir` could not be created, opened, read or written: exit 1.
    Store { dir: PathBuf, message: String },
    /// Anything else: exit 1.
    Failed(String),
}

impl Failure {
    /// The process's exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Store { .. } | Failure::Failed(_) => 1,
        }
    }

    /// A failure to use the store in `dir`.
    fn store(dir: &Path, e: impl fmt::Display) -> Failure {
        Failure::Store { dir: dir.to_owned(), message: format!("the store in {}: {e}", dir.display()) }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(message) | Failure::Failed(message) | Failure::Store { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Failed(message.to_owned())
    }
}

pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Help => {
            print!("{HELP}");
            Ok(())
        }
        Command::Version => {
            println!("hearth-collector {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Serve(settings) => serve::run(&settings),
        Command::TokenCreate { data_dir, ttl, name, tags, node } => {
            nodes::token_create(&data_dir, ttl, name, tags, node)
        }
        Command::FleetKeyCreate { data_dir, key } => fleetkeys::create(&data_dir, key),
        Command::FleetKeyList { data_dir } => fleetkeys::list(&data_dir),
        Command::FleetKeyRevoke { data_dir, id } => fleetkeys::revoke(&data_dir, &id),
        Command::ApiKeyCreate { data_dir, name, user } => people::apikey_create(&data_dir, name, &user),
        Command::UserAdd { data_dir, name, role } => people::user_add(&data_dir, &name, role),
        Command::UserPasswd { data_dir, name } => people::user_passwd(&data_dir, &name),
        Command::UserRemove { data_dir, name } => people::user_remove(&data_dir, &name),
        Command::UserList { data_dir } => people::user_list(&data_dir),
        Command::AlertTest { data_dir, alerts, channel } => {
            channels::alert_test(&data_dir, alerts.as_deref(), channel.as_deref())
        }
        Command::NodeSet { data_dir, node_id, grace_secs } => nodes::node_set(&data_dir, &node_id, grace_secs),
        Command::Nodes { data_dir, json, grace_secs, min_down_secs } => {
            nodes::list(&data_dir, json, grace_secs, min_down_secs)
        }
        Command::JobAdd { data_dir, name, period_secs, cron, tz, grace_secs, tags, public_url } => {
            let spec = crate::jobs::JobSpec { name, tags, period_secs, cron, tz, grace_secs };
            jobs::add(&data_dir, spec, &public_url)
        }
        Command::JobList { data_dir, json } => jobs::list(&data_dir, json),
        Command::JobPause { data_dir, job, paused, alerts } => jobs::pause(&data_dir, &job, paused, alerts.as_deref()),
        Command::JobRemove { data_dir, job, alerts } => jobs::remove(&data_dir, &job, alerts.as_deref()),
        Command::PingKeyRotate { data_dir, public_url } => jobs::rotate_key(&data_dir, &public_url),
        Command::MaintenanceAdd { data_dir, reason, start, end, cron, duration, time_zone, nodes, tags } => {
            let flags = holds::WindowFlags { reason, start, end, cron, duration, time_zone, nodes, tags };
            holds::maintenance_add(&data_dir, flags)
        }
        Command::MaintenanceList { data_dir, json } => holds::maintenance_list(&data_dir, json),
        Command::MaintenanceRemove { data_dir, id } => holds::remove(&data_dir, &id, HoldKind::Maintenance),
        Command::SilenceAdd { data_dir, node, tag, duration, reason } => {
            holds::silence_add(&data_dir, node, tag, duration, reason)
        }
        Command::SilenceList { data_dir, json } => holds::silence_list(&data_dir, json),
        Command::SilenceRemove { data_dir, id } => holds::remove(&data_dir, &id, HoldKind::Silenced),
        Command::NodeAck { data_dir, node_id } => holds::node_ack(&data_dir, &node_id),
        Command::StatusPageCreate { data_dir, slug, title, tags, show_hostnames } => {
            pages::create(&data_dir, slug, title, tags, show_hostnames)
        }
        Command::StatusPageList { data_dir } => pages::list(&data_dir),
        Command::StatusPageRemove { data_dir, slug } => pages::remove(&data_dir, &slug),
    }
}

fn now_ms() -> i64 {
    Clock::System.now_ms()
}

fn random_failed(e: getrandom::Error) -> Failure {
    Failure::Failed(format!("cannot get random bytes: {e}"))
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

/// Opens the store of a command that needs one already there: never creates one.
fn open_existing_store(dir: &Path) -> Result<Store, Failure> {
    if !Store::exists(dir) {
        let message = format!(
            "no store in {}: is that the collector's data directory? Name it with --data-dir DIR \
             (or HEARTH_DATA_DIR); `serve` creates the store",
            dir.display()
        );
        return Err(Failure::Store { dir: dir.to_owned(), message });
    }
    open_store(dir, None)
}

/// Opens the store in `dir`, creating the directory (0700) and the store if need be.
fn open_store(dir: &Path, max_db_mb: Option<usize>) -> Result<Store, Failure> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Failure::Store {
        dir: dir.to_owned(),
        message: format!("cannot create the data directory {}: {e}", dir.display()),
    })?;
    let max_map = max_db_mb.map_or(DEFAULT_MAX_MAP, |mb| mb.saturating_mul(1 << 20));
    Store::open(&StoreConfig::new(dir, max_map)).map_err(|e| Failure::Store {
        dir: dir.to_owned(),
        message: format!("cannot open the store in {}: {e} (is the directory writable by this user?)", dir.display()),
    })
}

pub use fleetkeys::NewKey;

/// Rows for a terminal: each column padded to its widest cell, two spaces apart.
fn text_table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let width = |c: usize| rows.iter().map(|r| r.as_ref()[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.as_ref().iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
