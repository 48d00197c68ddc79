//! Jobs at the command line: `job add|list|pause|resume|remove` and `ping-key rotate`.

use super::channels::served_channels;
use super::nodes::ago;
use super::{cli_audit, open_existing_store, open_store, random_failed, Failure};
use crate::alerts::config::Channels;
use crate::alerts::{self, Subject};
use crate::api::{create_job, new_ping_key};
use crate::clock::Clock;
use crate::jobs::{self, JobSpec};
use crate::liveness::Policy;
use crate::model::JobRecord;
use crate::secret;
use crate::store::{self, setting, Store, Txn};
use hearth_wire::format_rfc3339;
use std::io::Write;
use std::path::Path;

/// Who paused or removed a job, as its alert says.
const CLI: &str = "the command line";

/// The policy the last `serve` ran with, for reminders.
fn remind_ms<T: store::ReadTxn>(txn: &Txn<T>) -> Result<Option<i64>, store::Error> {
    Ok(txn.setting::<Policy>(setting::POLICY)?.unwrap_or_default().remind_ms())
}

/// Where pings reach the collector: `given` (`--public-url`), else what the last `serve` on
/// the store stored (its `--public-url`, else its address), else the default address.
fn public_url<T: store::ReadTxn>(txn: &Txn<T>, given: &Option<String>) -> Result<String, store::Error> {
    if let Some(url) = given {
        return Ok(url.clone());
    }
    let stored = txn.setting::<String>(setting::PUBLIC_URL)?.filter(|url| !url.is_empty());
    Ok(stored.unwrap_or_else(|| "http://127.0.0.1:8088".to_owned()))
}

pub(super) fn add(data_dir: &Path, spec: JobSpec, public_url: &Option<String>) -> Result<(), Failure> {
    let store = open_store(data_dir, None)?;
    let public_url = store.read(|txn| self::public_url(txn, public_url)).map_err(|e| Failure::store(data_dir, e))?;
    let now = Clock::from_env().now_ms(); // the clock `serve` reads
    let job = store
        .write(|txn| {
            let remind = remind_ms(txn)?;
            match create_job(txn, spec.clone(), now, remind)? {
                Ok(job) => {
                    txn.put_audit(cli_audit("job_added", &job.id, job.name.clone()))?;
                    Ok(Ok(job))
                }
                Err(e) => Ok(Err(e.message)),
            }
        })
        .map_err(|e| Failure::store(data_dir, e))?
        .map_err(|e| Failure::Failed(format!("cannot add the job: {e}")))?;
    println!("{public_url}/ping/{}", job.uuid);
    let when = jobs::expected_at(&job).map_or_else(|| "never".to_owned(), format_rfc3339);
    eprintln!(
        "job {} ({}, slug {}) added; first expected by {when}, with {} of grace. Ping the URL above when it succeeds, \
         /start when it starts, /fail when it fails",
        job.name,
        job.id,
        job.slug,
        crate::liveness::duration(job.grace_secs as i64 * 1000)
    );
    Ok(())
}

pub(super) fn list(data_dir: &Path, json: bool) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let all = store.read(|txn| txn.jobs()).map_err(|e| Failure::store(data_dir, e))?;
    let now = Clock::from_env().now_ms();
    let mut out = std::io::stdout().lock();
    let printed = if json {
        let views: Vec<_> = all.iter().map(|j| crate::api::job_view(j, now)).collect();
        writeln!(out, "{}", miniserde::json::to_string(&views))
    } else {
        out.write_all(table(&all, now).as_bytes())
    };
    match printed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// The job table for a terminal.
fn table(all: &[JobRecord], now: i64) -> String {
    let mut rows = vec![["NAME", "STATUS", "SCHEDULE", "LAST PING", "NEXT EXPECTED", "ID"].map(String::from)];
    for job in all {
        let schedule = match (&job.cron, job.period_secs) {
            (Some(cron), _) => format!("{cron} {}", job.tz.as_deref().unwrap_or("UTC")),
            (None, Some(secs)) => format!("every {}", crate::liveness::duration(secs as i64 * 1000)),
            (None, None) => "-".into(),
        };
        rows.push([
            job.name.clone(),
            jobs::status(job, now).as_str().to_owned(),
            schedule,
            job.last_ping.map_or_else(|| "never".to_owned(), |at| ago(now - at)),
            jobs::expected_at(job).map_or_else(|| "-".to_owned(), format_rfc3339),
            job.id.clone(),
        ]);
    }
    super::text_table(&rows)
}

/// The job named by its id or its slug.
fn find<T: store::ReadTxn>(txn: &Txn<T>, name: &str) -> Result<Option<JobRecord>, store::Error> {
    Ok(match txn.job(name)? {
        Some(job) => Some(job),
        None => txn.job_by_slug(name)?,
    })
}

fn no_job(name: &str) -> Failure {
    Failure::Failed(format!("no job has the id or slug {name}; see `hearth-collector job list`"))
}

/// The channels to tell that the job `name` is paused or removed: only when it is down or
/// failed is anything told, so only then can a channels file that is missing or wrong
/// (`served_channels`) stop the command.
fn channels_if_down(store: &Store, data_dir: &Path, name: &str, alerts: Option<&Path>) -> Result<Channels, Failure> {
    let down = store
        .read(|txn| Ok(find(txn, name)?.is_some_and(|job| job.down_since.is_some())))
        .map_err(|e| Failure::store(data_dir, e))?;
    Ok(if down { served_channels(store, data_dir, alerts)?.0 } else { Channels::default() })
}

pub(super) fn pause(data_dir: &Path, name: &str, paused: bool, alerts: Option<&Path>) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let channels = if paused { channels_if_down(&store, data_dir, name, alerts)? } else { Channels::default() };
    let found = store
        .write(|txn| {
            let Some(mut job) = find(txn, name)? else { return Ok(None) };
            let (previous, slug) = (job.deadline, job.slug.clone());
            let (remind, now) = (remind_ms(txn)?, Clock::from_env().now_ms());
            let ended = if paused {
                jobs::pause(&mut job, CLI, remind)
            } else {
                jobs::resume(&mut job, now, remind);
                Vec::new()
            };
            txn.save_job(&job, previous, Some(&slug))?;
            alerts::record_about(txn, &Subject::job(&job), &ended, now, &channels, |_| None)?;
            let action = if paused { "job_paused" } else { "job_resumed" };
            txn.put_audit(cli_audit(action, &job.id, job.name.clone()))?;
            Ok(Some(job))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    let job = found.ok_or_else(|| no_job(name))?;
    let what = if paused { "paused: no alerts until its next ping" } else { "watched again" };
    eprintln!("job {} ({}) {what}", job.name, job.id);
    Ok(())
}

pub(super) fn remove(data_dir: &Path, name: &str, alerts: Option<&Path>) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let channels = channels_if_down(&store, data_dir, name, alerts)?;
    let found = store
        .write(|txn| {
            let Some(job) = find(txn, name)? else { return Ok(None) };
            txn.delete_job(&job)?;
            alerts::record_about(
                txn,
                &Subject::job(&job),
                &jobs::remove(&job, CLI),
                Clock::from_env().now_ms(),
                &channels,
                |_| None,
            )?;
            txn.put_audit(cli_audit("job_removed", &job.id, job.name.clone()))?;
            Ok(Some(job))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    let job = found.ok_or_else(|| no_job(name))?;
    eprintln!("job {} ({}) removed, with its pings", job.name, job.id);
    Ok(())
}

pub(super) fn rotate_key(data_dir: &Path, public_url: &Option<String>) -> Result<(), Failure> {
    let store = open_store(data_dir, None)?;
    let public_url = store.read(|txn| self::public_url(txn, public_url)).map_err(|e| Failure::store(data_dir, e))?;
    let key = new_ping_key().map_err(random_failed)?;
    store
        .write(|txn| {
            txn.put_ping_key_hash(&secret::hash(&key))?;
            txn.put_audit(cli_audit("ping_key_rotated", "ping-key", String::new()))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    println!("{key}");
    eprintln!(
        "slug URLs are now {public_url}/ping/<key>/<slug>; the old key no longer works. This key is not shown again"
    );
    Ok(())
}
