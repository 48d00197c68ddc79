//! The ping routes, as Healthchecks' clients call them: `/ping/<uuid>[/start|/fail|/log|/<exit-status>]`
//! and `/ping/<ping-key>/<slug>[/…]`, by GET, HEAD or POST, with `?rid=` and `?create=1`.
//!
//! No credential beyond the UUID (or the ping key); every answer is text/plain, as
//! Healthchecks gives it: `OK`, `Created`, `not found`, or what was wrong. The body is the
//! run's log: kept (cut to `jobs::LOG_KEPT`), never logged.

use super::{query_param, Context, Handled, Reply, Request};
use crate::alerts::{self, Subject};
use crate::jobs::{self, JobSpec, LOG_KEPT};
use crate::model::{JobRecord, PingKind, PingRecord};
use crate::secret;
use crate::store::{RwTxn, Txn};

const TEXT: &str = "text/plain; charset=utf-8";

fn text(status: u16, body: &str) -> Reply {
    Reply::bytes(status, TEXT, body.as_bytes().to_vec())
}

/// Whether `text` is a UUID as Healthchecks writes them: lower-case hex, 8-4-4-4-12.
pub(super) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// What the part of the path after the job says.
fn action(part: Option<&str>) -> Result<(PingKind, Option<u64>), Reply> {
    match part {
        None => Ok((PingKind::Success, None)),
        Some("start") => Ok((PingKind::Start, None)),
        Some("fail") => Ok((PingKind::Fail, None)),
        Some("log") => Ok((PingKind::Log, None)),
        Some(digits) if !digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u64>() {
                Ok(0) => Ok((PingKind::Success, Some(0))),
                Ok(status @ 1..=255) => Ok((PingKind::Fail, Some(status))),
                _ => Err(text(400, "invalid url format")),
            }
        }
        Some(_) => Err(text(404, "not found")),
    }
}

/// `rest` is the path after `/ping/`.
pub(super) fn ping(rest: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let parts: Vec<&str> = rest.split('/').collect();
    let rid = match query_param(&req.query, "rid") {
        Some(rid) if is_uuid(&rid.to_ascii_lowercase()) => Some(rid.to_ascii_lowercase()),
        Some(_) => return Ok(text(400, "invalid uuid format for rid")),
        None => None,
    };
    let (found, action_text, create) = match parts.as_slice() {
        [uuid] | [uuid, _] if is_uuid(uuid) => (txn.job_by_uuid(uuid)?, parts.get(1).copied(), false),
        [key, slug] | [key, slug, _] if !key.is_empty() && !slug.is_empty() => {
            if !jobs::is_slug(slug) {
                return Ok(text(404, "not found"));
            }
            let key_ok = txn.ping_key_hash()?.is_some_and(|hash| secret::hash(key) == hash);
            if !key_ok {
                return Ok(text(404, "not found"));
            }
            (txn.job_by_slug(slug)?, parts.get(2).copied(), query_param(&req.query, "create").as_deref() == Some("1"))
        }
        _ => return Ok(text(404, "not found")),
    };
    let (kind, exit_status) = match action(action_text) {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    let (mut job, created) = match found {
        Some(job) => (job, false),
        None if create => match provision(parts[1], txn, ctx)? {
            Ok(job) => (job, true),
            Err(reply) => return Ok(reply),
        },
        None => return Ok(text(404, "not found")),
    };
    let previous = job.deadline;
    let pinged = jobs::on_ping(&mut job, kind, exit_status, rid.as_deref(), ctx.now_ms, ctx.policy.remind_ms());
    let body = req.body.as_bytes();
    let mut cut = body.len().min(LOG_KEPT);
    while !req.body.is_char_boundary(cut) {
        cut -= 1;
    }
    let ping = PingRecord {
        n: job.pings,
        at: ctx.now_ms,
        kind,
        exit_status,
        rid,
        duration_ms: pinged.duration_ms,
        log: req.body[..cut].to_owned(),
        log_bytes: body.len() as u64,
        method: format!("{:?}", req.method).to_ascii_uppercase(),
        client: req.client_text(),
    };
    job.pings += 1;
    txn.put_job_ping(&job.id, &ping)?;
    alerts::record_about(txn, &Subject::job(&job), &pinged.changes, ctx.now_ms, ctx.channels, |_| None)?;
    let previous_slug = if created { None } else { Some(job.slug.clone()) };
    txn.save_job(&job, previous, previous_slug.as_deref())?;
    Ok(if created { text(201, "Created") } else { text(200, "OK") })
}

/// A job made by `?create=1` for `slug`: every day with an hour's grace, as Healthchecks makes one.
fn provision(slug: &str, txn: &mut Txn<RwTxn>, ctx: &Context) -> Result<Result<JobRecord, Reply>, crate::store::Error> {
    if txn.job_count()? >= jobs::MAX_JOBS {
        return Ok(Err(text(409, &format!("the collector already has {} jobs, its limit", jobs::MAX_JOBS))));
    }
    let (Ok(id), Ok(uuid)) = (secret::new_id(), secret::new_node_id()) else {
        return Ok(Err(text(500, "the collector could not generate an id; try again")));
    };
    let spec = JobSpec {
        name: slug.to_owned(),
        period_secs: Some(jobs::DEFAULT_PERIOD_SECS),
        grace_secs: jobs::DEFAULT_GRACE_SECS,
        ..JobSpec::default()
    };
    match jobs::new_job(spec, format!("job-{id}"), uuid, ctx.now_ms, ctx.policy.remind_ms()) {
        Ok(job) => {
            log::info!("job {} ({}) made by a ping with ?create=1", job.name, job.id);
            Ok(Ok(job))
        }
        Err(e) => Ok(Err(text(400, &e))),
    }
}
