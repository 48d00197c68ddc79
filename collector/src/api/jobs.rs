//! Jobs as people manage them: list, read (with recent pings), add, edit, pause, remove,
//! read a ping's log, and rotate the ping key. Viewers read; operators change.

use super::fleet::{parse_known_body, server_url};
use super::{audit, ApiError, Context, Failure, Handled, Reply, Request, User};
use crate::alerts::{self, Subject};
use crate::jobs::{self, JobSpec, JobStatus};
use crate::model::{JobRecord, PingRecord, Role};
use crate::secret;
use crate::store::{self, ReadTxn, RwTxn, Txn};
use hearth_wire::format_rfc3339;
use miniserde::{Deserialize, Serialize};

/// Pings shown with each job (the dashboard's strip of recent runs).
const RECENT: usize = 20;

/// The prefix of the ping key, so that it is recognised in a paste.
pub const PING_KEY_PREFIX: &str = "hpk_";

#[derive(Serialize)]
struct JobList {
    jobs: Vec<JobView>,
}

#[derive(Serialize)]
pub(crate) struct JobView {
    id: String,
    name: String,
    slug: String,
    tags: Vec<String>,
    status: &'static str,
    period_secs: Option<u64>,
    cron: Option<String>,
    tz: Option<String>,
    grace_secs: u64,
    paused: bool,
    created_at: String,
    last_ping: Option<String>,
    last_ping_kind: Option<&'static str>,
    last_success: Option<String>,
    last_duration_ms: Option<i64>,
    next_expected: Option<String>,
    down_since: Option<String>,
    /// Only for operators: the URL is the credential.
    ping_url: Option<String>,
    /// Newest first.
    recent: Vec<PingView>,
}

#[derive(Serialize)]
struct PingView {
    n: u64,
    at: String,
    kind: &'static str,
    exit_status: Option<u64>,
    rid: Option<String>,
    duration_ms: Option<i64>,
    log_bytes: u64,
}

#[derive(Serialize)]
struct PingLog {
    n: u64,
    at: String,
    kind: &'static str,
    exit_status: Option<u64>,
    log: String,
    log_bytes: u64,
    /// Whether the log was cut to what is kept.
    truncated: bool,
}

impl PingView {
    fn of(p: &PingRecord) -> PingView {
        PingView {
            n: p.n,
            at: format_rfc3339(p.at),
            kind: p.kind.as_str(),
            exit_status: p.exit_status,
            rid: p.rid.clone(),
            duration_ms: p.duration_ms,
            log_bytes: p.log_bytes,
        }
    }
}

pub(crate) fn view(job: &JobRecord, recent: &[PingRecord], now: i64, ping_url: Option<String>) -> JobView {
    let status = jobs::status(job, now);
    JobView {
        id: job.id.clone(),
        name: job.name.clone(),
        slug: job.slug.clone(),
        tags: job.tags.clone(),
        status: status.as_str(),
        period_secs: job.period_secs,
        cron: job.cron.clone(),
        tz: job.tz.clone(),
        grace_secs: job.grace_secs,
        paused: job.paused,
        created_at: format_rfc3339(job.created_at),
        last_ping: job.last_ping.map(format_rfc3339),
        last_ping_kind: job.last_ping_kind.map(|k| k.as_str()),
        last_success: job.last_success.map(format_rfc3339),
        last_duration_ms: job.last_duration_ms,
        next_expected: (status != JobStatus::Paused).then(|| jobs::expected_at(job)).flatten().map(format_rfc3339),
        down_since: job.down_since.map(format_rfc3339),
        ping_url,
        recent: recent.iter().map(PingView::of).collect(),
    }
}

fn ping_url(job: &JobRecord, user: &User, req: &Request, ctx: &Context) -> Option<String> {
    (user.role >= Role::Operator).then(|| format!("{}/ping/{}", server_url(req, ctx), job.uuid))
}

fn no_such_job(id: &str) -> ApiError {
    ApiError::not_found(format!("there is no job {id}; list them with GET /api/jobs"))
}

pub(super) fn list<T: ReadTxn>(user: &User, req: &Request, txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut out = Vec::new();
    for job in txn.jobs()? {
        let recent = txn.job_pings(&job.id, RECENT)?;
        out.push(view(&job, &recent, ctx.now_ms, ping_url(&job, user, req, ctx)));
    }
    Ok(Reply::json(200, &JobList { jobs: out }))
}

pub(super) fn get<T: ReadTxn>(user: &User, id: &str, req: &Request, txn: &Txn<T>, ctx: &Context) -> Handled {
    let Some(job) = txn.job(id)? else { return Err(no_such_job(id).into()) };
    let recent = txn.job_pings(&job.id, jobs::PINGS_KEPT as usize)?;
    Ok(Reply::json(200, &view(&job, &recent, ctx.now_ms, ping_url(&job, user, req, ctx))))
}

pub(super) fn ping_log<T: ReadTxn>(id: &str, n: &str, txn: &Txn<T>) -> Handled {
    let missing = || ApiError::not_found(format!("job {id} has no ping {n} kept; only the last 100 are"));
    let n: u64 = n.parse().map_err(|_| missing())?;
    let Some(p) = txn.job_ping(id, n)? else { return Err(missing().into()) };
    let log = PingLog {
        n: p.n,
        at: format_rfc3339(p.at),
        kind: p.kind.as_str(),
        exit_status: p.exit_status,
        truncated: p.log_bytes as usize > p.log.len(),
        log_bytes: p.log_bytes,
        log: p.log,
    };
    Ok(Reply::json(200, &log))
}

/// The body of `POST /api/jobs` and `PUT /api/jobs/{id}`.
#[derive(Deserialize, Default)]
struct JobBody {
    name: Option<String>,
    tags: Option<Vec<String>>,
    period_secs: Option<u64>,
    cron: Option<String>,
    tz: Option<String>,
    /// What maintenance windows call `tz`.
    time_zone: Option<String>,
    grace_secs: Option<u64>,
    paused: Option<bool>,
}

const FIELDS: &[&str] = &["name", "tags", "period_secs", "cron", "tz", "time_zone", "grace_secs", "paused"];

/// `body` with its zone as `tz`, however spelt; two that differ are refused.
fn one_zone(body: JobBody) -> Result<JobBody, ApiError> {
    match (&body.tz, &body.time_zone) {
        (Some(a), Some(b)) if a != b => {
            Err(ApiError::invalid(format!("tz `{a}` and time_zone `{b}` differ: give one")))
        }
        _ => Ok(JobBody { tz: body.tz.clone().or(body.time_zone.clone()), ..body }),
    }
}

const SHAPE: &str =
    r#"{"name": "nightly-backup", "cron": "0 3 * * *", "tz": "Europe/Berlin", "grace_secs": 3600, "tags": ["nas"]}"#;

/// Adds a job from `spec`: checks its name is free and the collector has room. Shared with
/// `hearth-collector job add`.
pub(crate) fn create(
    txn: &mut Txn<RwTxn>,
    spec: JobSpec,
    now: i64,
    remind_ms: Option<i64>,
) -> Result<Result<JobRecord, ApiError>, store::Error> {
    if txn.job_count()? >= jobs::MAX_JOBS {
        let message = format!("the collector already has {} jobs, its limit; remove one first", jobs::MAX_JOBS);
        return Ok(Err(ApiError::new(409, "too_many_jobs", message)));
    }
    let (Ok(id), Ok(uuid)) = (secret::new_id(), secret::new_node_id()) else {
        return Ok(Err(ApiError::new(500, "internal", "the collector could not generate an id; try again")));
    };
    let job = match jobs::new_job(spec, format!("job-{id}"), uuid, now, remind_ms) {
        Ok(job) => job,
        Err(e) => return Ok(Err(ApiError::invalid(e))),
    };
    if txn.job_by_slug(&job.slug)?.is_some() {
        let message = format!("a job with the slug {} exists already; pick another name", job.slug);
        return Ok(Err(ApiError::new(409, "job_exists", message)));
    }
    txn.save_job(&job, None, None)?;
    Ok(Ok(job))
}

pub(super) fn add(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let body = one_zone(parse_known_body(req, SHAPE, FIELDS)?)?;
    let spec = JobSpec {
        name: body.name.unwrap_or_default(),
        tags: body.tags.unwrap_or_default(),
        period_secs: body.period_secs,
        cron: body.cron,
        tz: body.tz,
        grace_secs: body.grace_secs.unwrap_or(jobs::DEFAULT_GRACE_SECS),
    };
    let job = create(txn, spec, ctx.now_ms, ctx.policy.remind_ms())?.map_err(Failure::Api)?;
    audit(txn, ctx, req, &user.name, "job_added", Some(&job.id), job.name.clone())?;
    log::info!("{} added job {} ({})", user.name, job.name, job.id);
    Ok(Reply::json(201, &view(&job, &[], ctx.now_ms, ping_url(&job, user, req, ctx))))
}

pub(super) fn edit(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let body = one_zone(parse_known_body(req, SHAPE, FIELDS)?)?;
    let Some(mut job) = txn.job(id)? else { return Err(no_such_job(id).into()) };
    let (previous, previous_slug) = (job.deadline, job.slug.clone());
    // A pause ends what was told under the job's old name and tags, whatever this edit renames.
    let told_as = job.clone();
    let mut spec = JobSpec {
        name: body.name.clone().unwrap_or_else(|| job.name.clone()),
        tags: body.tags.unwrap_or_else(|| job.tags.clone()),
        period_secs: job.period_secs,
        cron: job.cron.clone(),
        tz: job.tz.clone(),
        grace_secs: body.grace_secs.unwrap_or(job.grace_secs),
    };
    // A new schedule replaces the old one whole.
    if body.period_secs.is_some() || body.cron.is_some() {
        (spec.period_secs, spec.cron, spec.tz) = (body.period_secs, body.cron, body.tz);
    } else if body.tz.is_some() {
        spec.tz = body.tz;
    }
    let renamed = jobs::new_job(spec.clone(), job.id.clone(), job.uuid.clone(), job.created_at, None)
        .map_err(ApiError::invalid)?;
    if renamed.slug != job.slug && txn.job_by_slug(&renamed.slug)?.is_some() {
        let message = format!("a job with the slug {} exists already; pick another name", renamed.slug);
        return Err(ApiError::new(409, "job_exists", message).into());
    }
    (job.name, job.slug, job.tags) = (renamed.name, renamed.slug, spec.tags);
    (job.period_secs, job.cron, job.tz, job.grace_secs) = (spec.period_secs, spec.cron, spec.tz, spec.grace_secs);
    let ended = match body.paused {
        Some(true) => jobs::pause(&mut job, &user.name, ctx.policy.remind_ms()),
        Some(false) => {
            jobs::resume(&mut job, ctx.now_ms, ctx.policy.remind_ms());
            Vec::new()
        }
        None => Vec::new(),
    };
    jobs::place(&mut job, ctx.policy.remind_ms());
    txn.save_job(&job, previous, Some(&previous_slug))?;
    alerts::record_about(txn, &Subject::job(&told_as), &ended, ctx.now_ms, ctx.channels, |_| None)?;
    let detail = if body.paused == Some(true) { "paused".to_owned() } else { "edited".to_owned() };
    audit(txn, ctx, req, &user.name, "job_updated", Some(&job.id), detail)?;
    log::info!("{} edited job {} ({})", user.name, job.name, job.id);
    let recent = txn.job_pings(&job.id, RECENT)?;
    Ok(Reply::json(200, &view(&job, &recent, ctx.now_ms, ping_url(&job, user, req, ctx))))
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

pub(super) fn remove(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let Some(job) = txn.job(id)? else { return Err(no_such_job(id).into()) };
    txn.delete_job(&job)?;
    let ended = jobs::remove(&job, &user.name);
    alerts::record_about(txn, &Subject::job(&job), &ended, ctx.now_ms, ctx.channels, |_| None)?;
    audit(txn, ctx, req, &user.name, "job_removed", Some(&job.id), job.name.clone())?;
    log::info!("{} removed job {} ({})", user.name, job.name, job.id);
    Ok(Reply::json(200, &Deleted { deleted: job.id }))
}

#[derive(Serialize)]
struct PingKey {
    ping_key: String,
    /// The slug URL of a job, with `{slug}` to fill in.
    ping_url: String,
}

/// Makes a new ping key (the old one stops working at once), shown this once.
pub(super) fn rotate_key(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let key = new_ping_key().map_err(super::internal)?;
    txn.put_ping_key_hash(&secret::hash(&key))?;
    audit(txn, ctx, req, &user.name, "ping_key_rotated", None, String::new())?;
    log::info!("{} made a new ping key", user.name);
    let ping_url = format!("{}/ping/{key}/{{slug}}", server_url(req, ctx));
    Ok(Reply::json(201, &PingKey { ping_key: key, ping_url }))
}

/// A ping key: the prefix and 128 random bits in hex, all of it safe in a URL.
pub(crate) fn new_ping_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{PING_KEY_PREFIX}{}", secret::hex(&bytes)))
}
