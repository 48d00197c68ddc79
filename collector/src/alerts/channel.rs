//! What each kind of channel is sent for an alert: URL, headers and body. Pure.

use super::config::{Channel, Kind};
use crate::model::{AlertRecord, EventKind};
use hearth_wire::format_rfc3339;
use hearth_wire::Check;
use miniserde::json::{self, Array, Number, Object, Value};
use std::collections::HashSet;

/// An HTTP POST to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// The channel's credentials held apart from the url (its user and password, its
    /// token), for `redact`.
    pub secrets: Vec<String>,
}

impl Outgoing {
    /// A POST of `body` to `url` with `headers`, its channel's credentials not yet added
    /// (`authorized`).
    fn to(url: String, headers: Vec<(&'static str, String)>, body: String) -> Outgoing {
        Outgoing { url, headers, body, secrets: Vec::new() }
    }

    /// Scheme, host and port of the url: what errors and logs may show of it, since the
    /// rest of a webhook url (Discord, Slack) is a credential.
    pub fn origin(&self) -> String {
        origin(&self.url)
    }

    /// `text` (what a channel answered) without anything of the request that may be a
    /// credential: the url's path and query, each of their parts, its user and password,
    /// and the credential headers sent (`Authorization`, `X-Gotify-Key`). Receivers echo them (`Cannot POST /services/T0/B0/xyz`,
    /// or the headers back on a 401), and what a channel answered is logged and shown.
    pub fn redact(&self, text: &str) -> String {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        let userinfo = authority.rsplit_once('@').map_or("", |(userinfo, _)| userinfo);
        // Always: the whole path, the credentials held apart, and what the credential
        // headers carry after their scheme. Of the url's parts, those that look like
        // secrets (long, or holding a digit), not words such as `alerts` or `true`.
        let mut secrets: Vec<&str> = vec![path, userinfo];
        secrets.extend(self.secrets.iter().map(String::as_str));
        for (_, value) in self.headers.iter().filter(|(name, _)| matches!(*name, "Authorization" | "X-Gotify-Key")) {
            secrets.push(value);
            secrets.push(value.split_once(' ').map_or(value.as_str(), |(_, credential)| credential));
        }
        let secret_like = |part: &&str| part.len() >= 8 || part.chars().any(|c| c.is_ascii_digit());
        secrets.extend(path.split(['/', '?', '&', '=', '#']).chain(userinfo.split(':')).filter(secret_like));
        secrets.retain(|secret| secret.len() >= 3);
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.into_iter().fold(text.to_owned(), |text, secret| text.replace(secret, "[hidden]"))
    }
}

/// `https://hooks.slack.com/services/T0/B0/xyz` → `https://hooks.slack.com`.
pub fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

/// How an alert of one kind is told, on every channel type. Each kind is spelled out (no
/// `_` arm), so a new kind does not compile until it is decided here.
struct Telling {
    /// After the node's name: "garage-pi is offline".
    what: &'static str,
    /// Trouble (as opposed to trouble ending, or news): Gotify's high priority.
    trouble: bool,
    /// ntfy's priority and tag.
    ntfy: (&'static str, &'static str),
    /// Alertmanager's `alertname` and `severity`; an alert and the one that ends it share them.
    alertmanager: (&'static str, &'static str),
    /// How long the Alertmanager alert lasts.
    ends: Ends,
}

/// When an alert posted to Alertmanager ends (`endsAt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// A problem: a week ahead, until the alert that ends it (reminders post it again).
    Later,
    /// The end of a problem: now, which resolves the alert.
    Now,
    /// News (a reboot, a test): fires, so that Alertmanager tells someone, and ends by
    /// itself [`NEWS_LASTS_MS`] later. One already ended would never be told at all.
    Soon,
}

/// How long news lasts in Alertmanager: well past its default `group_wait` (30 s).
const NEWS_LASTS_MS: i64 = 5 * 60_000;

/// Alertmanager's `alertname` and `severity` for an offline node, a failing check and flapping checks.
const OFFLINE_ALERT: (&str, &str) = ("HearthNodeOffline", "critical");
const CHECK_ALERT: (&str, &str) = ("HearthCheckFailing", "warning");
const FLAPPING_ALERT: (&str, &str) = ("HearthChecksFlapping", "warning");
/// Alertmanager's names for a job that is late, and one that failed.
const JOB_DOWN: (&str, &str) = ("HearthJobDown", "critical");
const JOB_FAILED: (&str, &str) = ("HearthJobFailed", "critical");

fn telling(kind: EventKind) -> Telling {
    const NEWS: (&str, &str) = ("3", "information_source");
    let t = |what, trouble, ntfy, alertmanager, ends| Telling { what, trouble, ntfy, alertmanager, ends };
    match kind {
        EventKind::Offline => t("is offline", true, ("5", "red_circle"), OFFLINE_ALERT, Ends::Later),
        EventKind::Reminder => t("is still offline", true, ("5", "red_circle"), OFFLINE_ALERT, Ends::Later),
        // A node never heard from is offline to Alertmanager, so that its first heartbeat resolves it.
        EventKind::Pending => t("has never sent a heartbeat", true, ("4", "warning"), OFFLINE_ALERT, Ends::Later),
        EventKind::Recovered => t("is back online", false, ("3", "green_circle"), OFFLINE_ALERT, Ends::Now),
        EventKind::CheckFailed => t("has a failing check", true, ("4", "warning"), CHECK_ALERT, Ends::Later),
        EventKind::CheckRecovered => {
            t("has a check passing again", false, ("3", "green_circle"), CHECK_ALERT, Ends::Now)
        }
        EventKind::Reboot => t("rebooted", false, NEWS, ("HearthNodeRebooted", "info"), Ends::Soon),
        EventKind::Flapping => t("has flapping checks", true, ("4", "warning"), FLAPPING_ALERT, Ends::Later),
        EventKind::FlappingStopped => {
            t("has steady checks again", false, ("3", "green_circle"), FLAPPING_ALERT, Ends::Now)
        }
        EventKind::Test => t("sent a test notification", false, NEWS, ("HearthTest", "info"), Ends::Soon),
        // Ends the node's offline, flapping and check alerts (`alertmanager_alerts`).
        EventKind::Deleted => t("was deleted", false, ("3", "wastebasket"), OFFLINE_ALERT, Ends::Now),
        // Events that never alert (`EventKind::alerts`), told plainly should that change.
        EventKind::Stopped => t("stopped cleanly", false, NEWS, ("HearthNodeStopped", "info"), Ends::Soon),
        EventKind::ServicesFailed => {
            t("reports services failing", true, ("4", "warning"), ("HearthServicesFailing", "warning"), Ends::Later)
        }
        EventKind::ServicesRecovered => t(
            "reports services ok again",
            false,
            ("3", "green_circle"),
            ("HearthServicesFailing", "warning"),
            Ends::Now,
        ),
        EventKind::ClockSkew => t("has a skewed clock", false, NEWS, ("HearthClockSkew", "info"), Ends::Soon),
        EventKind::JobDown => t("is late", true, ("5", "red_circle"), JOB_DOWN, Ends::Later),
        EventKind::JobFailed => t("failed", true, ("5", "red_circle"), JOB_FAILED, Ends::Later),
        // Resolves both HearthJobDown and HearthJobFailed (`alertmanager_alerts`).
        EventKind::JobRecovered => t("succeeded again", false, ("3", "green_circle"), JOB_DOWN, Ends::Now),
        // Like a success, these end both (`alertmanager_alerts`).
        EventKind::JobPaused => t("was paused", false, ("3", "pause_button"), JOB_DOWN, Ends::Now),
        EventKind::JobRemoved => t("was removed", false, ("3", "wastebasket"), JOB_DOWN, Ends::Now),
    }
}

/// One line a person reads: "garage-pi is offline: no heartbeat for 125 s".
pub fn summary(alert: &AlertRecord) -> String {
    format!("{} {}: {}", alert.name, telling(alert.kind).what, alert.detail)
}

/// The request that tells `channel` of `alert`, sent at `sent` (ms): what lasts in
/// Alertmanager lasts from when it is told, so an alert that waited out a channel's outage
/// does not arrive already over.
pub fn build(channel: &Channel, alert: &AlertRecord, sent: i64) -> Outgoing {
    authorized(channel, build_for(channel, alert, sent))
}

/// `out` with the channel's `user:password` as `Authorization: Basic`, if it has one.
fn authorized(channel: &Channel, mut out: Outgoing) -> Outgoing {
    if let Some(user_password) = &channel.basic_auth {
        out.headers.push(("Authorization", basic_auth(user_password)));
        out.secrets.push(user_password.clone());
        out.secrets.extend(user_password.split(':').map(str::to_owned));
    }
    out.secrets.extend(channel.token.clone());
    out
}

fn build_for(channel: &Channel, alert: &AlertRecord, sent: i64) -> Outgoing {
    let text = summary(alert);
    let tell = telling(alert.kind);
    let title = format!("Hearth: {} {}", alert.name, alert.kind.as_str().replace('_', " "));
    let json_headers = || vec![("Content-Type", "application/json".to_owned())];
    match channel.kind {
        Kind::Webhook => Outgoing::to(channel.url.clone(), json_headers(), json::to_string(&webhook_body(alert))),
        Kind::Ntfy => {
            let (priority, tag) = tell.ntfy;
            let mut headers = vec![("Title", title), ("Priority", priority.into()), ("Tags", tag.into())];
            if let Some(token) = &channel.token {
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            Outgoing::to(channel.url.clone(), headers, text)
        }
        Kind::Discord => {
            let body = object([("username", string("Hearth")), ("content", string(&text))]);
            Outgoing::to(channel.url.clone(), json_headers(), json::to_string(&body))
        }
        Kind::Slack => {
            Outgoing::to(channel.url.clone(), json_headers(), json::to_string(&object([("text", string(&text))])))
        }
        Kind::Gotify => {
            let priority = if tell.trouble { 8 } else { 4 };
            let body = object([("title", string(&title)), ("message", string(&text)), ("priority", number(priority))]);
            let mut headers = json_headers();
            headers.push(("X-Gotify-Key", channel.token.clone().unwrap_or_default()));
            Outgoing::to(format!("{}/message", channel.url), headers, json::to_string(&body))
        }
        Kind::Alertmanager => alertmanager_post(channel, alertmanager_alerts(alert, &text, sent)),
    }
}

/// The generic webhook's body, documented in the README.
pub fn webhook_body(alert: &AlertRecord) -> Value {
    object([
        ("id", number(alert.id)),
        ("kind", string(alert.kind.as_str())),
        ("summary", string(&summary(alert))),
        ("node_id", string(&alert.node_id)),
        ("name", string(&alert.name)),
        ("hostname", string(&alert.hostname)),
        ("tags", Value::Array(alert.tags.iter().map(|t| string(t)).collect())),
        ("check", alert.check.as_deref().map_or(Value::Null, string)),
        (
            "checks",
            alert.checks.as_ref().map_or(Value::Null, |checks| {
                let check = |c: &Check| {
                    object([("name", string(&c.name)), ("ok", Value::Bool(c.ok)), ("detail", string(&c.detail))])
                };
                Value::Array(checks.iter().map(check).collect())
            }),
        ),
        ("detail", string(&alert.detail)),
        ("at", string(&format_rfc3339(alert.at))),
        ("down_since", alert.down_since.map_or(Value::Null, |t| string(&format_rfc3339(t)))),
    ])
}

/// An alert in Alertmanager's v2 form (see `alertmanager_entries`).
fn alertmanager_alerts(alert: &AlertRecord, text: &str, sent: i64) -> Vec<Value> {
    alertmanager_entries(alert, text, sent).into_iter().map(|(_, _, value)| value).collect()
}

/// What is still firing in an Alertmanager channel, to post again: of `alerts`, newest
/// first, those meant for it, each with whether it was delivered there, the latest entry
/// of each label set where that is an ongoing problem and was delivered (a later word not
/// yet delivered, a recovery waiting to be retried, say, is never undone by an older one).
/// Alertmanager keeps no alerts across its own restart, and Hearth posts a problem once
/// (and at reminders): without this, one restart of it would drop every offline node and
/// failing check until they changed. `None` when nothing fires.
pub fn alertmanager_firing<'a>(
    channel: &Channel,
    alerts: impl IntoIterator<Item = (&'a AlertRecord, bool)>,
    now: i64,
) -> Option<Outgoing> {
    let (mut seen, mut gone, mut firing) = (HashSet::new(), HashSet::new(), Vec::new());
    for (alert, delivered) in alerts {
        if gone.contains(&alert.node_id) {
            continue;
        }
        for (key, ends, value) in alertmanager_entries(alert, &summary(alert), now) {
            if seen.insert(key) && ends == Ends::Later && delivered {
                firing.push(value);
            }
        }
        // Whatever was told of a deleted node or a removed job before has ended.
        if matches!(alert.kind, EventKind::Deleted | EventKind::JobRemoved) {
            gone.insert(alert.node_id.clone());
        }
    }
    if firing.is_empty() {
        return None;
    }
    Some(authorized(channel, alertmanager_post(channel, firing)))
}

/// A POST of `alerts` to an Alertmanager channel's `/api/v2/alerts`, its credentials not
/// yet added (`authorized`).
fn alertmanager_post(channel: &Channel, alerts: impl IntoIterator<Item = Value>) -> Outgoing {
    let headers = vec![("Content-Type", "application/json".to_owned())];
    let body = json::to_string(&Value::Array(Array::from_iter(alerts)));
    Outgoing::to(format!("{}/api/v2/alerts", channel.url), headers, body)
}

/// What identifies each of an alert's entries in Alertmanager (its labels, as one string):
/// the problems it tells of, or ends.
pub fn alertmanager_keys(alert: &AlertRecord) -> Vec<String> {
    alertmanager_entries(alert, "", alert.at).into_iter().map(|(key, _, _)| key).collect()
}

/// An alert's entries in Alertmanager's v2 form, each with what identifies it (its labels)
/// and how it ends. An ongoing problem is posted with an `endsAt` a week out (reminders and
/// [`alertmanager_firing`] post it again); its end is posted with `endsAt` now and the same
/// labels, which resolves it; news ends by itself a few minutes after it is posted ([`Ends`]).
fn alertmanager_entries(alert: &AlertRecord, text: &str, sent: i64) -> Vec<(String, Ends, Value)> {
    let tell = telling(alert.kind);
    let entry = |(alertname, severity): (&str, &str), check: Option<&str>, ends: Ends| {
        let key = format!("{alertname}\0{}\0{}", alert.node_id, check.unwrap_or(""));
        let mut labels = vec![("alertname", string(alertname)), ("severity", string(severity))];
        if alert.kind.is_job() {
            labels.extend([("job_id", string(&alert.node_id)), ("job", string(&alert.name))]);
        } else {
            labels.extend([
                ("node_id", string(&alert.node_id)),
                ("node", string(&alert.name)),
                ("hostname", string(&alert.hostname)),
            ]);
        }
        if let Some(check) = check {
            labels.push(("check", string(check)));
        }
        let starts = alert.down_since.unwrap_or(alert.at);
        let ends_at = match ends {
            Ends::Later => sent.max(alert.at) + 7 * 86_400_000,
            Ends::Now => alert.at,
            Ends::Soon => sent.max(alert.at) + NEWS_LASTS_MS,
        };
        let value = object([
            ("labels", object(labels)),
            ("annotations", object([("summary", string(text)), ("description", string(&alert.detail))])),
            ("startsAt", string(&format_rfc3339(starts))),
            ("endsAt", string(&format_rfc3339(ends_at))),
        ]);
        (key, ends, value)
    };
    let checks = alert.checks.as_deref().unwrap_or_default();
    match alert.kind {
        // Several checks at once: one entry each, as if they had changed one at a time.
        EventKind::CheckFailed | EventKind::CheckRecovered if !checks.is_empty() => {
            checks.iter().map(|c| entry(tell.alertmanager, Some(&c.name), tell.ends)).collect()
        }
        // Check alerts were held back while flapping: each check's entry says where it stands now.
        EventKind::FlappingStopped => std::iter::once(entry(tell.alertmanager, None, Ends::Now))
            .chain(checks.iter().map(|c| entry(CHECK_ALERT, Some(&c.name), if c.ok { Ends::Now } else { Ends::Later })))
            .collect(),
        // A deleted node can never end what was told of it: it all ends now.
        EventKind::Deleted => [entry(OFFLINE_ALERT, None, Ends::Now), entry(FLAPPING_ALERT, None, Ends::Now)]
            .into_iter()
            .chain(checks.iter().map(|c| entry(CHECK_ALERT, Some(&c.name), Ends::Now)))
            .collect(),
        // A success (or a pause, or a removal) ends both the late and the failed alert,
        // whichever was raised.
        EventKind::JobRecovered | EventKind::JobPaused | EventKind::JobRemoved => {
            vec![entry(JOB_DOWN, None, Ends::Now), entry(JOB_FAILED, None, Ends::Now)]
        }
        _ => vec![entry(tell.alertmanager, alert.check.as_deref(), tell.ends)],
    }
}

/// The always-firing `HearthWatchdog` alert for an Alertmanager channel with
/// `watchdog = true`: posted every `every`, it lasts three rounds, so it resolves
/// by itself a few minutes after the collector stops posting it. `since` is when this
/// collector started, so Alertmanager sees one alert, not a new one each round.
pub fn watchdog(channel: &Channel, since: &str, now_ms: i64, every: std::time::Duration) -> Outgoing {
    let ends = now_ms.saturating_add(3 * every.as_millis() as i64);
    let alert = object([
        ("labels", object([("alertname", string("HearthWatchdog")), ("severity", string("none"))])),
        (
            "annotations",
            object([(
                "summary",
                string("The Hearth collector is running; this alert always fires, so that its silence is noticed"),
            )]),
        ),
        ("startsAt", string(since)),
        ("endsAt", string(&format_rfc3339(ends))),
    ]);
    authorized(channel, alertmanager_post(channel, [alert]))
}

/// The `Authorization` value for a url's `user:password`.
pub fn basic_auth(user_password: &str) -> String {
    format!("Basic {}", base64(user_password.as_bytes()))
}

/// Standard base64 with padding (RFC 4648), for `Authorization: Basic`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let mut object = Object::new();
    for (key, value) in fields {
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn number(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the test alerts are sent: when they were made, unless a test says otherwise.
    const SENT: i64 = 1_700_000_000_000;

    fn alert(kind: EventKind) -> AlertRecord {
        AlertRecord {
            id: 7,
            kind,
            node_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            name: "garage-pi".into(),
            hostname: "pi".into(),
            tags: vec!["garage".into()],
            check: None,
            checks: None,
            detail: "no heartbeat for 125 s".into(),
            at: 1_700_000_000_000,
            down_since: Some(1_700_000_000_000),
            deliveries: Vec::new(),
        }
    }

    fn channel(kind: Kind, url: &str, token: Option<&str>) -> Channel {
        Channel {
            name: "c".into(),
            kind,
            url: url.into(),
            token: token.map(Into::into),
            basic_auth: None,
            tags: vec![],
            reboot: false,
            watchdog: false,
        }
    }

    /// A check that failed, then went away from the agent's list, resolves in Alertmanager:
    /// the same labels as the firing alert, and `endsAt` at the recovery.
    #[test]
    fn a_check_recovery_resolves_its_alertmanager_alert() {
        let am = channel(Kind::Alertmanager, "http://am:9093", None);
        let failing =
            AlertRecord { check: Some("cloudflared".into()), down_since: None, ..alert(EventKind::CheckFailed) };
        let gone = AlertRecord {
            at: failing.at + 60_000,
            detail: "cloudflared is no longer reported".into(),
            ..AlertRecord { kind: EventKind::CheckRecovered, ..failing.clone() }
        };
        let labels = |body: &str| body.split(r#""labels":"#).nth(1).unwrap().split('}').next().unwrap().to_owned();
        let (fired, resolved) = (build(&am, &failing, SENT).body, build(&am, &gone, SENT).body);
        assert_eq!(labels(&fired), labels(&resolved));
        assert!(labels(&fired).contains(r#""check":"cloudflared""#), "{fired}");
        assert!(resolved.contains(r#""endsAt":"2023-11-14T22:14:20Z""#), "{resolved}");
    }

    /// Several checks in one alert are one Alertmanager entry each, labelled as if they had
    /// changed one at a time; after flapping, each check's entry says where it stands.
    #[test]
    fn alerts_about_several_checks_give_alertmanager_one_entry_per_check() {
        let am = channel(Kind::Alertmanager, "http://am:9093", None);
        let check = |name: &str, ok| Check { name: name.into(), ok, detail: "x".into() };
        let failing =
            AlertRecord { checks: Some(vec![check("a", false), check("b", false)]), ..alert(EventKind::CheckFailed) };
        let body = build(&am, &failing, SENT).body;
        let entries: Vec<Value> = match json::from_str::<Value>(&body).unwrap() {
            Value::Array(entries) => entries.into_iter().collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(entries.len(), 2, "{body}");
        assert!(body.contains(r#""check":"a""#) && body.contains(r#""check":"b""#), "{body}");
        let webhook = build(&channel(Kind::Webhook, "https://example.com/hook", None), &failing, SENT).body;
        assert!(webhook.contains(r#""checks":[{"detail":"x","name":"a","ok":false}"#), "{webhook}");

        let steady = AlertRecord {
            checks: Some(vec![check("a", true), check("b", false)]),
            ..alert(EventKind::FlappingStopped)
        };
        let body = build(&am, &steady, SENT).body;
        let ended = |label: &str| {
            let entry = body.split(r#"{"annotations""#).find(|e| e.contains(label)).unwrap();
            entry.contains(r#""endsAt":"2023-11-14T22:13:20Z""#)
        };
        assert!(ended(r#""alertname":"HearthChecksFlapping""#), "the flapping alert resolves: {body}");
        assert!(ended(r#""check":"a""#), "a passing check resolves: {body}");
        assert!(!ended(r#""check":"b""#), "a failing check fires: {body}");
    }

    /// News (a reboot, `alert test`) fires, so that Alertmanager tells someone, and ends by
    /// itself five minutes later: one posted already ended would be told to nobody.
    #[test]
    fn news_fires_in_alertmanager_and_ends_by_itself() {
        let am = channel(Kind::Alertmanager, "http://am:9093", None);
        for (kind, name) in [(EventKind::Reboot, "HearthNodeRebooted"), (EventKind::Test, "HearthTest")] {
            let body = build(&am, &alert(kind), SENT).body;
            assert!(body.contains(&format!(r#""alertname":"{name}""#)), "{body}");
            assert!(body.contains(r#""startsAt":"2023-11-14T22:13:20Z""#), "{body}");
            assert!(body.contains(r#""endsAt":"2023-11-14T22:18:20Z""#), "{body}");
            // Told an hour late (the channel was down), it still lasts five minutes from then.
            let late = build(&am, &alert(kind), SENT + 3_600_000).body;
            assert!(late.contains(r#""endsAt":"2023-11-14T23:18:20Z""#), "{late}");
        }
    }

    /// A job's alerts carry the job's labels; a success resolves both the late and the failed alert.
    #[test]
    fn job_alerts_reach_alertmanager_and_success_resolves_them() {
        let am = channel(Kind::Alertmanager, "http://am:9093", None);
        let job = |kind| AlertRecord { node_id: "job-1".into(), name: "nightly-backup".into(), ..alert(kind) };
        let down = build(&am, &job(EventKind::JobDown), SENT).body;
        assert!(
            down.contains(r#""alertname":"HearthJobDown""#) && down.contains(r#""job":"nightly-backup""#),
            "{down}"
        );
        assert!(!down.contains("node_id"), "{down}");
        let failed = build(&am, &job(EventKind::JobFailed), SENT).body;
        assert!(failed.contains(r#""alertname":"HearthJobFailed""#), "{failed}");
        // A success, a pause and a removal each end both, whichever was raised.
        for kind in [EventKind::JobRecovered, EventKind::JobPaused, EventKind::JobRemoved] {
            let back = build(&am, &job(kind), SENT).body;
            for name in ["HearthJobDown", "HearthJobFailed"] {
                let entry = back.split(r#"{"annotations""#).find(|e| e.contains(name)).unwrap();
                assert!(entry.contains(r#""endsAt":"2023-11-14T22:13:20Z""#), "{kind:?}: {name} resolves: {back}");
                assert!(entry.contains(r#""job":"nightly-backup""#), "{kind:?}: {back}");
            }
        }
        assert_eq!(summary(&job(EventKind::JobFailed)), "nightly-backup failed: no heartbeat for 125 s");
    }

    #[test]
    fn basic_auth_goes_in_a_header_and_origins_keep_only_scheme_and_host() {
        for (raw, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("hearth:p@ss", "aGVhcnRoOnBAc3M=")]
        {
            assert_eq!(base64(raw.as_bytes()), encoded, "{raw}");
        }
        let am =
            Channel { basic_auth: Some("hearth:p@ss".into()), ..channel(Kind::Alertmanager, "https://am.lan", None) };
        let out = build(&am, &alert(EventKind::Offline), SENT);
        assert!(out.headers.contains(&("Authorization", "Basic aGVhcnRoOnBAc3M=".into())), "{:?}", out.headers);
        assert_eq!(out.url, "https://am.lan/api/v2/alerts");
        for (url, expected) in [
            ("https://discord.com/api/webhooks/1/s3cret", "https://discord.com"),
            ("http://127.0.0.1:9093/api/v2/alerts?x=1", "http://127.0.0.1:9093"),
            ("https://me:s3cret@ntfy.lan/topic", "https://ntfy.lan"),
            ("https://hooks.slack.com", "https://hooks.slack.com"),
        ] {
            assert_eq!(origin(url), expected);
        }
    }

    /// What a receiver echoes of the request (Express's `Cannot POST /path`, or the
    /// headers on a 401) never shows the url's secrets or the credentials sent.
    #[test]
    fn what_a_channel_answers_is_shown_without_what_it_echoes_of_the_credentials() {
        // As the channels file gives it: the user and password are held apart from the url.
        let file = "[channel s]\ntype = slack\nurl = https://hearth:pa55word@h.lan/services/T0/B0/S3CRETSLACK?k=q1w2\n\
                    [channel am]\ntype = alertmanager\nurl = http://am.lan\n";
        let channels = super::super::config::parse(file).unwrap();
        let slack = build(&channels.list[0], &alert(EventKind::Offline), SENT);
        let echoed = "Cannot POST /services/T0/B0/S3CRETSLACK?k=q1w2 (\\/services\\/T0\\/B0\\/S3CRETSLACK) \
                      for hearth:pa55word; bad password pa55word";
        let shown = slack.redact(echoed);
        for secret in ["S3CRETSLACK", "q1w2", "pa55word"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.starts_with("Cannot POST "), "what it said is kept: {shown}");
        // Words of the url that are no secret are left alone.
        let am = build(&channels.list[1], &alert(EventKind::Offline), SENT);
        assert_eq!(am.redact("alerts: invalid, true"), "alerts: invalid, true");
        let gotify =
            build(&channel(Kind::Gotify, "https://g.lan", Some("GOTIFYTOKEN")), &alert(EventKind::Offline), SENT);
        let ntfy =
            build(&channel(Kind::Ntfy, "https://n.lan/t", Some("tk_NTFYTOKEN")), &alert(EventKind::Offline), SENT);
        let echoed =
            r#"{"X-Gotify-Key":"GOTIFYTOKEN","Authorization":"Bearer tk_NTFYTOKEN","Title":"garage-pi is offline"}"#;
        assert!(!gotify.redact(echoed).contains("GOTIFYTOKEN") && !ntfy.redact(echoed).contains("tk_NTFYTOKEN"));
        assert!(ntfy.redact(echoed).contains("garage-pi is offline"), "{}", ntfy.redact(echoed));
    }

    #[test]
    fn every_kind_of_channel() {
        let offline = alert(EventKind::Offline);
        let out = build(&channel(Kind::Slack, "https://hooks.slack.com/x", None), &offline, SENT);
        assert_eq!(out.body, r#"{"text":"garage-pi is offline: no heartbeat for 125 s"}"#);
        let out = build(&channel(Kind::Discord, "https://discord.com/api/webhooks/1/x", None), &offline, SENT);
        assert_eq!(out.body, r#"{"content":"garage-pi is offline: no heartbeat for 125 s","username":"Hearth"}"#);
        let out = build(&channel(Kind::Ntfy, "https://ntfy.sh/t", Some("tk")), &offline, SENT);
        assert_eq!(out.body, "garage-pi is offline: no heartbeat for 125 s");
        assert!(
            out.headers.contains(&("Priority", "5".into()))
                && out.headers.contains(&("Authorization", "Bearer tk".into()))
        );
        let out = build(&channel(Kind::Gotify, "https://gotify.lan", Some("app")), &offline, SENT);
        assert_eq!(out.url, "https://gotify.lan/message");
        assert!(out.headers.contains(&("X-Gotify-Key", "app".into())) && out.body.contains(r#""priority":8"#));
        let out = build(&channel(Kind::Alertmanager, "http://am:9093", None), &offline, SENT);
        assert_eq!(out.url, "http://am:9093/api/v2/alerts");
        assert!(out.body.starts_with(r#"[{"annotations":"#), "{}", out.body);
        assert!(
            out.body.contains(r#""alertname":"HearthNodeOffline""#)
                && out.body.contains(r#""endsAt":"2023-11-21T22:13:20Z""#)
        );
        let recovered = AlertRecord { at: 1_700_000_060_000, ..alert(EventKind::Recovered) };
        let resolved = build(&channel(Kind::Alertmanager, "http://am:9093", None), &recovered, SENT);
        assert!(resolved.body.contains(r#""endsAt":"2023-11-14T22:14:20Z""#), "{}", resolved.body);
        assert!(
            resolved.body.contains(r#""startsAt":"2023-11-14T22:13:20Z""#),
            "starts when it went down: {}",
            resolved.body
        );
        let out = build(&channel(Kind::Webhook, "https://example.com/hook", None), &offline, SENT);
        assert!(out.body.contains(r#""kind":"offline""#) && out.body.contains(r#""id":7"#));
    }
}
