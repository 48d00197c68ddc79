//! Scheduled jobs watched by their pings: when a job is expected, where it stands, and
//! what a ping or a passed deadline changes. Pure: every function is handed the time,
//! like `liveness.rs`; the store and the routes live elsewhere (`store/jobs.rs`, `api/pings.rs`).
//!
//! A job is expected after its last success (or its creation): `period` later, or at the
//! next time its cron expression names in its time zone. Past that plus its grace, or
//! past its grace after a `/start` that never finished, it is down. A `/fail` (or a
//! non-zero exit status) makes it down at once. A success brings it back.

use crate::liveness::{duration, Change, Kind};
use crate::model::{JobRecord, OpenRun, PingKind};
use chrono::DateTime;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// Pings kept per job, oldest dropped.
pub const PINGS_KEPT: u64 = 100;
/// Bytes of a ping's body kept as its log.
pub const LOG_KEPT: usize = 10 * 1024;
/// Runs started and not finished that a job remembers (for `?rid=`), oldest dropped.
pub const OPEN_RUNS: usize = 10;
/// The most jobs a collector keeps: with `PINGS_KEPT` and `LOG_KEPT`, a bound on the store.
pub const MAX_JOBS: u64 = 1000;
/// The longest period or grace: a year.
pub const MAX_SECS: u64 = 366 * 86_400;

/// When a job is expected.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every this many seconds.
    Period(u64),
    /// At the times a cron expression names, in a time zone.
    Cron(Box<Cron>, Tz),
}

impl Schedule {
    /// A schedule from a job's stored fields, or what is wrong with them (a sentence).
    pub fn parse(period_secs: Option<u64>, cron: Option<&str>, tz: Option<&str>) -> Result<Schedule, String> {
        match (period_secs, cron) {
            (Some(_), Some(_)) => Err("give a period or a cron schedule, not both".into()),
            (None, None) => Err("give a period (like 1d) or a cron schedule (like \"0 3 * * *\")".into()),
            (Some(_), None) if tz.is_some() => Err("a time zone goes with a cron schedule, not a period".into()),
            (Some(secs), None) if secs == 0 || secs > MAX_SECS => {
                Err(format!("the period must be from 1 s to {MAX_SECS} s (a year), not {secs} s"))
            }
            (Some(secs), None) => Ok(Schedule::Period(secs)),
            (None, Some(text)) => {
                let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
                if text.split_whitespace().count() != 5 {
                    return Err(format!(
                        "the cron schedule `{text}` must have 5 fields: minute hour day month weekday"
                    ));
                }
                let cron = parser.parse(text).map_err(|e| {
                    format!("the cron schedule `{text}` is not valid: {e}; write it like \"0 3 * * *\"")
                })?;
                let tz = match tz {
                    None => Tz::UTC,
                    Some(name) => name.parse::<Tz>().map_err(|_| {
                        format!("`{name}` is not a time zone; name one from the IANA database, like Europe/Berlin")
                    })?,
                };
                Ok(Schedule::Cron(Box::new(cron), tz))
            }
        }
    }

    pub fn of(job: &JobRecord) -> Result<Schedule, String> {
        Schedule::parse(job.period_secs, job.cron.as_deref(), job.tz.as_deref())
    }

    /// The first time the job is expected after `after` (Unix ms); `None` if never
    /// (a cron expression that names no date, like 30 February).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Schedule::Period(secs) => Some(after.saturating_add(secs.saturating_mul(1000) as i64)),
            Schedule::Cron(cron, tz) => {
                let start = DateTime::from_timestamp_millis(after)?.with_timezone(tz);
                cron.find_next_occurrence(&start, false).ok().map(|next| next.timestamp_millis())
            }
        }
    }
}

/// What a person says a job is: from the CLI or the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub tags: Vec<String>,
    pub period_secs: Option<u64>,
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub grace_secs: u64,
}

/// Healthchecks' defaults for a job made by `?create=1`: every day, an hour's grace.
pub const DEFAULT_PERIOD_SECS: u64 = 86_400;
pub const DEFAULT_GRACE_SECS: u64 = 3600;

/// A new job from `spec`, with its public `id` and ping `uuid`, made at `now`; or what is
/// wrong with `spec`.
pub fn new_job(spec: JobSpec, id: String, uuid: String, now: i64, remind_ms: Option<i64>) -> Result<JobRecord, String> {
    let name = spec.name.trim().to_owned();
    let odd = |c: char| c.is_control() || hearth_wire::fields::is_deceptive(c);
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(odd) {
        return Err("a job's name must be 1 to 100 printable characters".into());
    }
    let slug = slugify(&name);
    if !is_slug(&slug) {
        return Err(format!("the name {name:?} makes no slug; use some letters or digits"));
    }
    check(&spec)?;
    let mut job = JobRecord {
        id,
        uuid,
        name,
        slug,
        tags: spec.tags,
        period_secs: spec.period_secs,
        cron: spec.cron,
        tz: spec.tz,
        grace_secs: spec.grace_secs,
        created_at: now,
        ..JobRecord::default()
    };
    place(&mut job, remind_ms);
    Ok(job)
}

/// Whether `spec`'s schedule, grace and tags can be kept.
pub fn check(spec: &JobSpec) -> Result<(), String> {
    let schedule = Schedule::parse(spec.period_secs, spec.cron.as_deref(), spec.tz.as_deref())?;
    // One that names no real date (30 February) would make every look at the job search
    // in vain for years ahead: refuse it here, once.
    if schedule.next_after(0).is_none() {
        let cron = spec.cron.as_deref().unwrap_or_default();
        return Err(format!("the cron schedule `{cron}` names no date that exists (like 30 February)"));
    }
    if spec.grace_secs == 0 || spec.grace_secs > MAX_SECS {
        return Err(format!("the grace must be from 1 s to {MAX_SECS} s (a year), not {} s", spec.grace_secs));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:=".contains(c);
    if spec.tags.len() > 32 || spec.tags.iter().any(|t| !(1..=64).contains(&t.len()) || !t.chars().all(allowed)) {
        return Err("a job may have at most 32 tags of 1 to 64 letters, digits, `-`, `_`, `.`, `:` or `=`".into());
    }
    Ok(())
}

/// Where a job stands, by the collector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Never pinged, and not yet late.
    New,
    Up,
    /// A run started and has not finished, within its grace.
    Started,
    /// Past when it was expected, within its grace.
    Grace,
    /// Late past its grace, or its last run failed.
    Down,
    Paused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Up => "up",
            JobStatus::Started => "started",
            JobStatus::Grace => "grace",
            JobStatus::Down => "down",
            JobStatus::Paused => "paused",
        }
    }
}

/// When the job is next expected to succeed: after its last success, else its creation.
pub fn expected_at(job: &JobRecord) -> Option<i64> {
    Schedule::of(job).ok()?.next_after(job.last_success.unwrap_or(job.created_at))
}

/// When the job is down if nothing more comes: its grace past when it was expected, or
/// past its oldest unfinished start, whichever is first; and never within its grace of
/// being resumed.
pub fn down_at(job: &JobRecord) -> Option<i64> {
    let grace = job.grace_secs.saturating_mul(1000) as i64;
    let late = expected_at(job).map(|at| at.saturating_add(grace));
    let stuck = job.open_runs.first().map(|run| run.at.saturating_add(grace));
    let at = match (late, stuck) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    at.map(|at| job.resumed_at.map_or(at, |resumed| at.max(resumed.saturating_add(grace))))
}

pub fn status(job: &JobRecord, now: i64) -> JobStatus {
    if job.paused {
        return JobStatus::Paused;
    }
    if job.down_since.is_some() || job.failed || down_at(job).is_some_and(|at| now >= at) {
        return JobStatus::Down;
    }
    if !job.open_runs.is_empty() {
        return JobStatus::Started;
    }
    if expected_at(job).is_some_and(|at| now > at) {
        return JobStatus::Grace;
    }
    if job.last_ping.is_none() {
        return JobStatus::New;
    }
    JobStatus::Up
}

/// What a ping did besides the changes it made.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pinged {
    pub changes: Vec<Change>,
    /// For a finish that matched a start: how long the run took.
    pub duration_ms: Option<i64>,
}

/// Takes in a ping of `kind` (with `exit_status` for `/<status>`, and the run id `rid`)
/// that arrived at `now`. A ping resumes a paused job. `remind_ms` is how often a down
/// job is reminded about.
pub fn on_ping(
    job: &mut JobRecord,
    kind: PingKind,
    exit_status: Option<u64>,
    rid: Option<&str>,
    now: i64,
    remind_ms: Option<i64>,
) -> Pinged {
    let mut out = Pinged::default();
    unpause(job, now); // a ping resumes a paused job
    job.last_ping = Some(now);
    job.last_ping_kind = Some(kind);
    match kind {
        PingKind::Log => {}
        PingKind::Start => {
            // Without a run id, a new start replaces the last one (as Healthchecks does).
            if rid.is_none() {
                job.open_runs.retain(|run| run.rid.is_some());
            }
            job.open_runs.push(OpenRun { rid: rid.map(str::to_owned), at: now });
            let excess = job.open_runs.len().saturating_sub(OPEN_RUNS);
            job.open_runs.drain(..excess);
        }
        PingKind::Success | PingKind::Fail => {
            let matched = job.open_runs.iter().rposition(|run| run.rid.as_deref() == rid);
            if let Some(i) = matched {
                let run = job.open_runs.remove(i);
                out.duration_ms = Some((now - run.at).max(0));
                job.last_duration_ms = out.duration_ms;
            }
            let took = out.duration_ms.map(|ms| format!(" after {}", duration(ms))).unwrap_or_default();
            if kind == PingKind::Success {
                job.last_success = Some(now);
                job.failed = false;
                job.reminded_at = None;
                if let Some(since) = job.down_since.take() {
                    let detail = format!("succeeded{took}, after {} down", duration(now - since));
                    out.changes.push(change(Kind::JobRecovered, detail, Some(since)));
                }
            } else if !job.failed {
                job.failed = true;
                job.down_since = job.down_since.or(Some(now));
                job.reminded_at = None;
                let how =
                    exit_status.map_or_else(|| "reported failure".to_owned(), |s| format!("exited with status {s}"));
                out.changes.push(change(Kind::JobFailed, format!("{how}{took}"), None));
            }
        }
    }
    place(job, remind_ms);
    out
}

/// Looks at a job whose deadline passed: down when late, reminders while down.
/// `watching_since` is when the collector started: a job whose pings may have been lost
/// while it was away gets a fresh grace from then (a refused ping cannot come again before
/// the job's next run, where a node beats again within its interval).
pub fn on_deadline(job: &mut JobRecord, now: i64, remind_ms: Option<i64>, watching_since: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    if job.paused {
        job.deadline = None;
        return changes;
    }
    match job.down_since {
        None => {
            let Some(at) = down_at(job) else {
                job.deadline = None;
                return changes;
            };
            let at = at.max(watching_since.saturating_add(job.grace_secs.saturating_mul(1000) as i64));
            if now < at {
                job.deadline = Some(at);
                return changes;
            }
            let grace = duration(job.grace_secs as i64 * 1000);
            let stuck = job.open_runs.first().filter(|run| run.at.saturating_add(job.grace_secs as i64 * 1000) <= now);
            let detail = match (stuck, expected_at(job)) {
                (Some(run), _) => {
                    format!("started {} ago and not finished within its grace of {grace}", duration(now - run.at))
                }
                (None, Some(expected)) => format!(
                    "expected at {} and no success since (grace {grace})",
                    hearth_wire::format_rfc3339(expected)
                ),
                (None, None) => format!("no success within its grace of {grace}"),
            };
            job.down_since = Some(now);
            changes.push(change(Kind::JobDown, detail, None));
        }
        Some(since) => {
            let last = job.reminded_at.unwrap_or(since);
            if remind_ms.is_some_and(|every| now >= last + every) {
                let (kind, what) = if job.failed { (Kind::JobFailed, "failing") } else { (Kind::JobDown, "down") };
                changes.push(change(kind, format!("still {what}, for {} now", duration(now - since)), None));
                job.reminded_at = Some(now);
            }
        }
    }
    place(job, remind_ms);
    changes
}

/// Pauses a job: it is not watched until its next ping or until it is resumed. One that
/// was down or failed is so no longer: what was told of it ends (`job_paused`; in
/// Alertmanager, which would otherwise keep paging about it), and a problem after the
/// pause is told afresh. `by` is who paused it.
pub fn pause(job: &mut JobRecord, by: &str, remind_ms: Option<i64>) -> Vec<Change> {
    job.paused = true;
    let ended = told_of(job, Kind::JobPaused, format!("paused by {by}; alerts about it end until it is watched again"));
    (job.down_since, job.failed, job.reminded_at) = (None, false, None);
    place(job, remind_ms);
    ended
}

/// Resumes a paused job at `now`. It was not pinged while paused (nobody was watching), so
/// it is not late at once for a run expected meanwhile: it has its grace from now.
pub fn resume(job: &mut JobRecord, now: i64, remind_ms: Option<i64>) {
    unpause(job, now);
    place(job, remind_ms);
}

/// Watches a paused job again from `now`, by an operator or by a ping: its grace counts
/// from then (`resumed_at`, read by `down_at`).
fn unpause(job: &mut JobRecord, now: i64) {
    if job.paused {
        (job.paused, job.resumed_at) = (false, Some(now));
    }
}

/// What removing a job tells: that a job down or failed is over (`job_removed`), since
/// nothing could end it once the job is gone. `by` is who removed it.
pub fn remove(job: &JobRecord, by: &str) -> Vec<Change> {
    told_of(job, Kind::JobRemoved, format!("removed by {by}; what was told of it is over"))
}

/// A `kind` change when something was told of the job (it is down or failed); else none.
fn told_of(job: &JobRecord, kind: Kind, detail: String) -> Vec<Change> {
    job.down_since.map(|since| change(kind, detail, Some(since))).into_iter().collect()
}

/// Sets when the sweep next looks at the job.
pub fn place(job: &mut JobRecord, remind_ms: Option<i64>) {
    job.deadline = if job.paused {
        None
    } else if let Some(since) = job.down_since {
        remind_ms.map(|every| job.reminded_at.unwrap_or(since) + every)
    } else {
        down_at(job)
    };
}

fn change(kind: Kind, detail: String, down_since: Option<i64>) -> Change {
    Change { kind, check: None, detail, down_since, checks: Vec::new() }
}

/// A slug from a name, as Healthchecks makes one: lower case letters, digits, `-` and `_`,
/// with every other run of characters one `-`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').chars().take(100).collect()
}

/// Whether `text` is a slug as [`slugify`] makes them: 1 to 100 of `a-z`, `0-9`, `_` and
/// single `-` between them.
pub fn is_slug(text: &str) -> bool {
    !text.is_empty() && slugify(text) == text
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;
    const H: i64 = 3600 * S;
    /// 2026-01-05T00:00:00Z, a Monday.
    const T0: i64 = 1_767_571_200_000;

    fn job(period: Option<u64>, cron: Option<&str>, tz: Option<&str>, grace_secs: u64) -> JobRecord {
        let mut job = JobRecord {
            id: "j".into(),
            period_secs: period,
            cron: cron.map(Into::into),
            tz: tz.map(Into::into),
            grace_secs,
            created_at: T0,
            ..Default::default()
        };
        place(&mut job, None);
        job
    }

    #[test]
    fn schedules_are_checked() {
        type Case<'a> = (Option<u64>, Option<&'a str>, Option<&'a str>, Result<(), &'a str>);
        let cases: &[Case] = &[
            (Some(86_400), None, None, Ok(())),
            (None, Some("0 3 * * *"), Some("Europe/Berlin"), Ok(())),
            (None, Some("*/15 * * * 1-5"), None, Ok(())),
            (Some(60), Some("0 3 * * *"), None, Err("not both")),
            (None, None, None, Err("give a period")),
            (Some(0), None, None, Err("from 1 s")),
            (Some(60), None, Some("UTC"), Err("goes with a cron")),
            (None, Some("0 0 3 * * *"), None, Err("5 fields")),
            (None, Some("61 3 * * *"), None, Err("not valid")),
            (None, Some("0 3 * * *"), Some("Mars/Olympus"), Err("not a time zone")),
        ];
        for (period, cron, tz, expected) in cases {
            let got = Schedule::parse(*period, *cron, *tz).map(|_| ());
            match (expected, got) {
                (Ok(()), Ok(())) => {}
                (Err(want), Err(e)) => assert!(e.contains(want), "{cron:?} {tz:?}: {e}"),
                (want, got) => panic!("{period:?} {cron:?} {tz:?}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_schedule_that_never_comes_is_refused() {
        let spec =
            |cron: &str| JobSpec { name: "x".into(), cron: Some(cron.into()), grace_secs: 60, ..JobSpec::default() };
        assert!(check(&spec("0 0 30 2 *")).unwrap_err().contains("names no date"));
        assert!(check(&spec("0 0 29 2 *")).is_ok(), "a leap day comes");
    }

    #[test]
    fn cron_runs_in_its_time_zone() {
        // 03:00 in Berlin is 02:00 UTC in winter.
        let berlin = Schedule::parse(None, Some("0 3 * * *"), Some("Europe/Berlin")).unwrap();
        assert_eq!(berlin.next_after(T0), Some(T0 + 2 * H));
        let utc = Schedule::parse(None, Some("0 3 * * *"), None).unwrap();
        assert_eq!(utc.next_after(T0), Some(T0 + 3 * H));
        assert_eq!(utc.next_after(T0 + 3 * H), Some(T0 + 27 * H), "strictly after");
        // Summer time: 03:00 in Berlin on 2026-07-01 is 01:00 UTC.
        let july = 1_782_864_000_000; // 2026-07-01T00:00:00Z
        assert_eq!(berlin.next_after(july), Some(july + H));
        assert_eq!(Schedule::Period(60).next_after(T0), Some(T0 + 60 * S));
    }

    /// A cron job never pinged goes down once its first expected run is past its grace,
    /// and is reminded about only if reminders are on.
    #[test]
    fn an_unpinged_cron_job_goes_down_after_its_grace() {
        let mut j = job(None, Some("0 3 * * *"), None, 3600);
        assert_eq!(status(&j, T0), JobStatus::New);
        assert_eq!(j.deadline, Some(T0 + 4 * H));
        assert_eq!(status(&j, T0 + 3 * H + S), JobStatus::Grace);
        assert!(on_deadline(&mut j, T0 + 4 * H - S, None, 0).is_empty());
        let changes = on_deadline(&mut j, T0 + 4 * H, None, 0);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, Kind::JobDown);
        assert!(changes[0].detail.contains("expected at 2026-01-05T03:00:00"), "{}", changes[0].detail);
        assert_eq!((j.deadline, status(&j, T0 + 4 * H)), (None, JobStatus::Down));
        // A collector that started at 03:30 gives it a fresh grace from then.
        let mut fresh = job(None, Some("0 3 * * *"), None, 3600);
        assert!(on_deadline(&mut fresh, T0 + 4 * H, None, T0 + 3 * H + 1800 * S).is_empty());
        assert_eq!(fresh.deadline, Some(T0 + 4 * H + 1800 * S));
        // With reminders every hour.
        place(&mut j, Some(H));
        assert_eq!(j.deadline, Some(T0 + 5 * H));
        let again = on_deadline(&mut j, T0 + 5 * H, Some(H), 0);
        assert_eq!((again[0].kind, again[0].detail.as_str()), (Kind::JobDown, "still down, for 60 min now"));
    }

    #[test]
    fn fail_pages_at_once_and_success_recovers_with_the_duration() {
        let mut j = job(Some(86_400), None, None, 3600);
        let started = on_ping(&mut j, PingKind::Start, None, None, T0 + H, None);
        assert!(started.changes.is_empty());
        assert_eq!(status(&j, T0 + H), JobStatus::Started);
        assert_eq!(j.deadline, Some(T0 + 2 * H), "down if the run does not finish within its grace");
        let failed = on_ping(&mut j, PingKind::Fail, Some(3), None, T0 + H + 90 * S, None);
        assert_eq!(failed.duration_ms, Some(90 * S));
        assert_eq!(failed.changes[0].kind, Kind::JobFailed);
        assert_eq!(failed.changes[0].detail, "exited with status 3 after 90 s");
        assert_eq!(status(&j, T0 + H + 90 * S), JobStatus::Down);
        assert!(on_ping(&mut j, PingKind::Fail, None, None, T0 + 2 * H, None).changes.is_empty(), "once");
        let ok = on_ping(&mut j, PingKind::Success, None, None, T0 + 3 * H, None);
        assert_eq!(ok.changes[0].kind, Kind::JobRecovered);
        assert_eq!(ok.changes[0].down_since, Some(T0 + H + 90 * S));
        assert_eq!(status(&j, T0 + 3 * H), JobStatus::Up);
        assert_eq!(j.deadline, Some(T0 + 3 * H + 86_400 * S + H));
    }

    #[test]
    fn run_ids_pair_overlapping_runs() {
        let mut j = job(Some(3600), None, None, 600);
        on_ping(&mut j, PingKind::Start, None, Some("a"), T0, None);
        on_ping(&mut j, PingKind::Start, None, Some("b"), T0 + 10 * S, None);
        let a = on_ping(&mut j, PingKind::Success, None, Some("a"), T0 + 100 * S, None);
        assert_eq!(a.duration_ms, Some(100 * S));
        let b = on_ping(&mut j, PingKind::Success, None, Some("b"), T0 + 130 * S, None);
        assert_eq!(b.duration_ms, Some(120 * S));
        let none = on_ping(&mut j, PingKind::Success, None, Some("c"), T0 + 140 * S, None);
        assert_eq!(none.duration_ms, None, "no start with that run id");
        for i in 0..20 {
            on_ping(&mut j, PingKind::Start, None, Some(&i.to_string()), T0 + 200 * S, None);
        }
        assert_eq!(j.open_runs.len(), OPEN_RUNS);
    }

    /// Pausing a failed job ends what was told of it, once; a failure after the pause is
    /// told afresh. Pausing or removing a job that is fine tells nothing.
    #[test]
    fn pausing_a_failed_job_ends_its_alert_and_the_next_failure_is_told_again() {
        let mut j = job(Some(86_400), None, None, 3600);
        assert!(pause(&mut j, "ann", None).is_empty(), "nothing was told of a job that is fine");
        assert!(remove(&j, "ann").is_empty());
        let mut j = job(Some(86_400), None, None, 3600);
        on_ping(&mut j, PingKind::Fail, None, None, T0 + H, None);
        let removed = remove(&j, "ann");
        assert_eq!((removed[0].kind, removed[0].down_since), (Kind::JobRemoved, Some(T0 + H)));
        let paused = pause(&mut j, "ann", Some(H));
        assert_eq!((paused[0].kind, paused[0].down_since), (Kind::JobPaused, Some(T0 + H)));
        assert_eq!(paused[0].detail, "paused by ann; alerts about it end until it is watched again");
        assert_eq!((status(&j, T0 + 2 * H), j.deadline), (JobStatus::Paused, None));
        assert!(pause(&mut j, "ann", None).is_empty(), "once");
        let again = on_ping(&mut j, PingKind::Fail, None, None, T0 + 2 * H, None);
        assert_eq!(again.changes[0].kind, Kind::JobFailed, "a failure after the pause is told");
    }

    /// A job resumed after its run was due (it failed, and was paused meanwhile) has its
    /// grace from the resume: it is not paged about at once for what nobody watched.
    #[test]
    fn a_resumed_job_has_its_grace_from_the_resume() {
        let mut j = job(Some(3600), None, None, 600);
        on_ping(&mut j, PingKind::Fail, None, None, T0, None);
        pause(&mut j, "ann", None);
        resume(&mut j, T0 + 5 * H, None);
        assert_eq!((status(&j, T0 + 5 * H), j.deadline), (JobStatus::Grace, Some(T0 + 5 * H + 600 * S)));
        assert!(on_deadline(&mut j, T0 + 5 * H + 599 * S, None, 0).is_empty());
        let late = on_deadline(&mut j, T0 + 5 * H + 600 * S, None, 0);
        assert_eq!(late[0].kind, Kind::JobDown, "once its grace from the resume has passed");
        // A resume of a job that was not paused changes nothing.
        let mut k = job(Some(3600), None, None, 600);
        resume(&mut k, T0 + 5 * H, None);
        assert_eq!((k.resumed_at, k.deadline), (None, Some(T0 + H + 600 * S)));
    }

    /// A `/start` that resumes a paused job, overdue, gives it its grace from then too.
    #[test]
    fn a_start_that_resumes_a_paused_job_gives_it_its_grace() {
        let mut j = job(Some(3600), None, None, 600);
        pause(&mut j, "ann", None);
        on_ping(&mut j, PingKind::Start, None, None, T0 + 5 * H, None);
        assert_eq!((status(&j, T0 + 5 * H), j.deadline), (JobStatus::Started, Some(T0 + 5 * H + 600 * S)));
        assert!(on_deadline(&mut j, T0 + 5 * H + 599 * S, None, 0).is_empty());
    }

    #[test]
    fn a_ping_resumes_a_paused_job() {
        let mut j = job(Some(60), None, None, 60);
        j.paused = true;
        place(&mut j, None);
        assert_eq!((j.deadline, status(&j, T0 + 10 * H)), (None, JobStatus::Paused));
        on_ping(&mut j, PingKind::Log, None, None, T0 + 10 * H, None);
        // Watched again, with its grace from the ping: its runs while paused were not watched.
        assert_eq!((j.paused, j.deadline), (false, Some(T0 + 10 * H + 60 * S)));
    }

    #[test]
    fn slugs() {
        for (name, slug) in [("Nightly Backup", "nightly-backup"), ("restic@nas!", "restic-nas"), ("a__b", "a__b")] {
            assert_eq!(slugify(name), slug);
            assert!(is_slug(slug));
        }
        assert!(!is_slug("") && !is_slug("A") && !is_slug("a/b") && !is_slug("-a") && !is_slug("a--b"));
    }
}
