//! The delivery worker: a thread that sends outbox alerts to their channels.

use super::channel;
use super::config::{Channels, Kind};
use crate::clock::Clock;
use crate::model::{AlertRecord, Delivery, DeliveryState, EventKind};
use crate::store::{self, Store};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts per channel before an alert is marked failed for it (about a day, at the cap).
pub const MAX_ATTEMPTS: u64 = 300;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// How often what still fires is posted again to each Alertmanager channel
/// ([`Worker::resend_firing`]): how long an Alertmanager that restarted lacks it at most.
const FIRING_RESENT_EVERY: Duration = Duration::from_secs(5 * 60);

/// Counts for /metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub given_up: AtomicU64,
}

pub struct Worker {
    pub store: Arc<Store>,
    pub channels: Arc<Channels>,
    pub clock: Clock,
    pub stats: Arc<Stats>,
}

impl Worker {
    /// Delivers what is due whenever woken, and at least twice a second; and posts again
    /// what still fires to Alertmanager channels every [`FIRING_RESENT_EVERY`].
    pub fn run(self, wake: Receiver<()>) {
        let mut resent = Instant::now();
        loop {
            match wake.recv_timeout(Duration::from_millis(500)) {
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                _ => {
                    if let Err(e) = self.deliver_due() {
                        log::error!("alert delivery: {e}");
                    }
                    if resent.elapsed() >= FIRING_RESENT_EVERY {
                        resent = Instant::now();
                        if let Err(e) = self.resend_firing() {
                            log::error!("posting what still fires to Alertmanager: {e}");
                        }
                    }
                }
            }
        }
    }

    /// Posts again to each Alertmanager channel what it was told of and still fires
    /// (`channel::alertmanager_firing`), after the outbox's own deliveries, so that a
    /// restarted Alertmanager has it back. A failure waits for the next round.
    pub fn resend_firing(&self) -> Result<(), store::Error> {
        let mut channels = self.channels.list.iter().filter(|c| c.kind == Kind::Alertmanager).peekable();
        if channels.peek().is_none() {
            return Ok(());
        }
        // Every alert kept: at most the settled ones kept and the outbox, newest first.
        let alerts = self.store.read(|txn| txn.alerts(usize::MAX))?;
        let now = self.clock.now_ms();
        for channel in channels {
            let meant = alerts.iter().filter_map(|a| {
                let delivery = a.deliveries.iter().find(|d| d.channel == channel.name)?;
                Some((a, delivery.state == DeliveryState::Delivered))
            });
            let Some(out) = channel::alertmanager_firing(channel, meant, now) else { continue };
            if let Err(e) = send(&out) {
                log::warn!("posting what still fires to channel {} failed: {e}", channel.name);
            }
        }
        Ok(())
    }

    /// One pass over the outbox, oldest alert first. A channel hears of a node (or job) in
    /// the order its alerts were made: while an earlier one is still pending for that
    /// channel (unless the channel refused that one itself: [`holds_back`]), a later one
    /// waits. Otherwise, after a channel's outage, a recovery could reach it before the
    /// offline alert it ends, and Alertmanager would keep a node that is back firing for a week.
    /// For the same reason, an earlier alert that did not hold the channel back (it refused
    /// it) is dropped there once a later alert about the same problem has been delivered
    /// ([`ends`]).
    pub fn deliver_due(&self) -> Result<(), store::Error> {
        // (subject, channel) pairs with an earlier alert still pending that holds them back.
        let mut behind: HashSet<(String, String)> = HashSet::new();
        // (subject, channel) pairs, and the earlier alerts still pending for them.
        let mut earlier: HashMap<(String, String), Vec<u64>> = HashMap::new();
        for id in self.store.read(|txn| txn.outbox())? {
            let Some(mut alert) = self.store.read(|txn| txn.alert(id))? else { continue };
            let now = self.clock.now_ms();
            let waits = |channel: &str| behind.contains(&(alert.node_id.clone(), channel.to_owned()));
            let due: Vec<usize> = (0..alert.deliveries.len())
                .filter(|i| {
                    let delivery = &alert.deliveries[*i];
                    delivery.state == DeliveryState::Pending
                        && delivery.next_attempt <= now
                        && !waits(&delivery.channel)
                })
                .collect();
            // A channel no longer in the channels file can hold nothing back.
            let configured = |d: &Delivery| self.channels.get(&d.channel).is_some();
            let still_pending = |alert: &AlertRecord| -> Vec<(String, String)> {
                let pending = alert
                    .deliveries
                    .iter()
                    .filter(|d| d.state == DeliveryState::Pending && holds_back(d) && configured(d));
                pending.map(|d| (alert.node_id.clone(), d.channel.clone())).collect()
            };
            if !due.is_empty() {
                self.attempt_due(&mut alert, due, &earlier)?;
            }
            behind.extend(still_pending(&alert));
            for d in alert.deliveries.iter().filter(|d| d.state == DeliveryState::Pending) {
                earlier.entry((alert.node_id.clone(), d.channel.clone())).or_default().push(alert.id);
            }
        }
        Ok(())
    }

    /// Tries `alert`'s deliveries `due`, keeps how each went, and drops on each channel
    /// that took it the `earlier` alerts it speaks for ([`ends`]).
    fn attempt_due(
        &self,
        alert: &mut AlertRecord,
        due: Vec<usize>,
        earlier: &HashMap<(String, String), Vec<u64>>,
    ) -> Result<(), store::Error> {
        let outcomes: Vec<Result<String, Failed>> =
            due.iter().map(|i| self.attempt(alert, &alert.deliveries[*i].channel)).collect();
        let now = self.clock.now_ms();
        for (i, outcome) in due.into_iter().zip(outcomes) {
            let delivery = &mut alert.deliveries[i];
            delivery.attempts += 1;
            match outcome {
                Ok(_) => {
                    delivery.state = DeliveryState::Delivered;
                    delivery.delivered_at = Some(now);
                    delivery.last_error = None;
                    delivery.answered = None;
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(failed) => {
                    log::warn!(
                        "alert {} to channel {} failed (attempt {}): {failed}",
                        alert.id,
                        delivery.channel,
                        delivery.attempts
                    );
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    delivery.answered = failed.status;
                    delivery.last_error = Some(failed.message);
                    if delivery.attempts >= MAX_ATTEMPTS {
                        delivery.state = DeliveryState::Failed;
                        self.stats.given_up.fetch_add(1, Ordering::Relaxed);
                    } else {
                        delivery.next_attempt = now + backoff_ms(delivery.attempts) as i64;
                    }
                }
            }
        }
        self.store.write(|txn| txn.put_alert(alert))?;
        for delivery in alert.deliveries.iter().filter(|d| d.state == DeliveryState::Delivered) {
            let key = (alert.node_id.clone(), delivery.channel.clone());
            for id in earlier.get(&key).into_iter().flatten() {
                self.drop_ended(*id, alert, &delivery.channel)?;
            }
        }
        Ok(())
    }

    /// Drops alert `id`'s pending delivery to `channel` if `later`, delivered there, tells
    /// where the same problem stands now.
    fn drop_ended(&self, id: u64, later: &AlertRecord, channel: &str) -> Result<(), store::Error> {
        self.store.write(|txn| {
            let Some(mut alert) = txn.alert(id)?.filter(|alert| ends(later, alert)) else { return Ok(()) };
            let Some(delivery) =
                alert.deliveries.iter_mut().find(|d| d.channel == channel && d.state == DeliveryState::Pending)
            else {
                return Ok(());
            };
            log::info!("alert {id} to channel {channel} dropped: alert {}, about the same, went first", later.id);
            delivery.state = DeliveryState::Dropped;
            delivery.last_error =
                Some(format!("not sent: alert {}, a later word on the same, was sent first", later.id));
            txn.put_alert(&alert)
        })
    }

    fn attempt(&self, alert: &AlertRecord, channel_name: &str) -> Result<String, Failed> {
        let channel = self
            .channels
            .get(channel_name)
            .ok_or_else(|| Failed { status: None, message: "the channel is no longer configured".into() })?;
        send(&channel::build(channel, alert, self.clock.now_ms()))
    }
}

/// Whether `later` tells where every problem `earlier` tells of (or ends) stands now: a
/// later word on each of them (Alertmanager's label sets: the node's being offline, its
/// flapping, each check it names, the job's being late or failed), or the node's deletion.
/// Sent after it, `earlier` would leave a channel with news that is out of date:
/// Alertmanager would keep firing a problem that is over, or resolve one that is not.
fn ends(later: &AlertRecord, earlier: &AlertRecord) -> bool {
    if later.kind == EventKind::Deleted {
        return !earlier.kind.is_job();
    }
    let covered = channel::alertmanager_keys(later);
    channel::alertmanager_keys(earlier).iter().all(|key| covered.contains(key))
}

/// Whether a pending delivery holds back the later alerts of its node (or job) on its
/// channel: yes, unless the channel refused this very alert (400, 413, 422: its body,
/// which the next alert's may not share), for one alert a channel will never take must
/// not hold up the rest for the day it is retried. Any other failure (unreachable, 5xx,
/// busy, a bad token or path, a redirect) is the channel's, and when it is mended the
/// alerts go in order.
fn holds_back(delivery: &Delivery) -> bool {
    !matches!(delivery.answered, Some(400 | 413 | 422))
}

/// Why a request to a channel failed: its HTTP status if it answered, and what to show.
#[derive(Debug)]
pub struct Failed {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends one request; the answer's status line, or why it failed. The error names only the
/// url's scheme and host (see [`channel::origin`]), and what the channel answered without
/// any part of the url or headers (`Outgoing::redact`): it is logged and shown to every
/// viewer in `GET /api/alerts`, and a webhook url's path is its secret.
pub fn send(out: &channel::Outgoing) -> Result<String, Failed> {
    // A redirect would carry the alert, and any Basic credentials, somewhere the channels
    // file never named: it is an error, as is an endless status line or header.
    let mut request = minreq::post(&out.url)
        .with_body(out.body.as_str())
        .with_timeout(10)
        .with_follow_redirects(false)
        .with_max_status_line_length(1024)
        .with_max_headers_size(16 * 1024);
    for (name, value) in &out.headers {
        request = request.with_header(*name, value);
    }
    let response =
        request.send().map_err(|e| Failed { status: None, message: format!("cannot reach {}: {e}", out.origin()) })?;
    // The reason phrase is the channel's own text too, and may echo the request.
    let status = format!("{} {}", response.status_code, out.redact(&response.reason_phrase));
    let code = u16::try_from(response.status_code).ok();
    if (200..300).contains(&response.status_code) {
        Ok(status)
    } else if (300..400).contains(&response.status_code) {
        let message = format!(
            "{} answered {status}, a redirect, which is not followed: give the channel its final url",
            out.origin()
        );
        Err(Failed { status: code, message })
    } else {
        // What it said, without what it may echo of the request's credentials: redacted
        // before it is cut to what is shown, so that no secret is cut in two and half shown.
        // (Only its first 64 KiB are read for that: any secret cut there lies far past what
        // is shown, as each one before it shrinks to no less than `[hidden]`.)
        let said: String = response.as_str().unwrap_or("").chars().take(64 * 1024).collect();
        let body: String = out.redact(&said).chars().take(200).collect();
        Err(Failed { status: code, message: format!("{} answered {status}: {body}", out.origin()) })
    }
}

/// 1 s, 2 s, 4 s… up to 5 min, each ±20 % so that retries after an outage spread out.
fn backoff_ms(attempts: u64) -> u64 {
    let base = 1000u64.saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1)).min(MAX_BACKOFF_MS);
    let mut byte = [0u8; 2];
    let spread = match getrandom::fill(&mut byte) {
        Ok(()) => u64::from(u16::from_le_bytes(byte)) % (base * 2 / 5 + 1),
        Err(_) => base / 5,
    };
    base - base / 5 + spread
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an Alertmanager channel was told and still fires is posted again: not what
    /// ended since (even if that end is still to be delivered), not what never reached it,
    /// nothing of a deleted node.
    #[test]
    fn what_still_fires_is_posted_again_to_alertmanager() {
        use crate::store::StoreConfig;
        use std::io::{BufRead, Read, Write};
        use EventKind::*;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream);
            let (mut line, mut length) = (String::new(), 0);
            while reader.read_line(&mut line).unwrap() > 2 {
                let last = line.lines().last().unwrap_or("").to_ascii_lowercase();
                if let Some(v) = last.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
            String::from_utf8(body).unwrap()
        });
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&StoreConfig::new(dir.path(), 16 << 20)).unwrap());
        let text = format!("[channel am]\ntype = alertmanager\nurl = http://{addr}\n");
        let channels = Arc::new(super::super::config::parse(&text).unwrap());
        let delivered = |state| Delivery {
            channel: "am".into(),
            state,
            attempts: 1,
            next_attempt: 0,
            last_error: None,
            answered: None,
            delivered_at: None,
        };
        let history = [
            ("a", Offline, &[][..], DeliveryState::Delivered),
            ("b", Offline, &[], DeliveryState::Delivered),
            ("b", Recovered, &[], DeliveryState::Delivered),
            ("c", CheckFailed, &["disk", "raid"], DeliveryState::Delivered),
            ("c", CheckRecovered, &["raid"], DeliveryState::Delivered),
            ("d", Offline, &[], DeliveryState::Delivered),
            ("d", CheckFailed, &["fan"], DeliveryState::Delivered),
            ("d", Deleted, &[], DeliveryState::Delivered),
            ("e", Offline, &[], DeliveryState::Pending),
            // Its recovery waits to be retried: the older offline is not the latest word.
            ("f", Offline, &[], DeliveryState::Delivered),
            ("f", Recovered, &[], DeliveryState::Pending),
        ];
        store
            .write(|txn| {
                for (i, (node, kind, checks, state)) in history.into_iter().enumerate() {
                    let checks = checks.iter().map(|n| hearth_wire::Check {
                        name: (*n).into(),
                        ok: kind != CheckFailed,
                        detail: String::new(),
                    });
                    txn.put_alert(&AlertRecord {
                        id: i as u64 + 1,
                        kind,
                        node_id: node.into(),
                        name: format!("node-{node}"),
                        hostname: String::new(),
                        tags: Vec::new(),
                        check: None,
                        checks: Some(checks.collect::<Vec<_>>()).filter(|c| !c.is_empty()),
                        detail: String::new(),
                        at: 1_000,
                        down_since: None,
                        deliveries: vec![delivered(state)],
                    })?;
                }
                Ok(())
            })
            .unwrap();
        let worker = Worker { store, channels, clock: Clock::System, stats: Arc::default() };
        worker.resend_firing().unwrap();
        let body = fake.join().unwrap();
        let posted: Vec<&str> = body.split(r#""labels":"#).skip(1).collect();
        assert_eq!(posted.len(), 2, "{body}");
        assert!(posted.iter().any(|p| p.contains("HearthNodeOffline") && p.contains(r#""node_id":"a""#)), "{body}");
        assert!(posted.iter().any(|p| p.contains(r#""check":"disk""#) && p.contains(r#""node_id":"c""#)), "{body}");
        assert!(body.contains(r#""endsAt":"20"#), "{body}");
    }

    #[test]
    fn only_a_later_word_on_the_same_problem_drops_an_alert() {
        use EventKind::*;
        let alert = |kind, check: Option<&str>, checks: &[&str]| AlertRecord {
            id: 1,
            kind,
            node_id: "n".into(),
            name: String::new(),
            hostname: String::new(),
            tags: Vec::new(),
            check: check.map(str::to_owned),
            checks: (!checks.is_empty()).then(|| {
                checks
                    .iter()
                    .map(|n| hearth_wire::Check { name: (*n).into(), ok: true, detail: String::new() })
                    .collect()
            }),
            detail: String::new(),
            at: 0,
            down_since: None,
            deliveries: Vec::new(),
        };
        let (offline, recovered) = (alert(Offline, None, &[]), alert(Recovered, None, &[]));
        assert!(ends(&recovered, &offline));
        assert!(ends(&offline, &recovered), "the next outage: the old recovery must not resolve it");
        assert!(ends(&offline, &alert(Reminder, None, &[])));
        assert!(ends(&alert(Deleted, None, &[]), &offline));
        assert!(!ends(&alert(CheckRecovered, Some("disk"), &[]), &offline));
        assert!(!ends(&offline, &alert(CheckFailed, Some("disk"), &[])));
        let disk_and_raid = alert(CheckFailed, None, &["disk", "raid"]);
        assert!(!ends(&alert(CheckRecovered, Some("disk"), &[]), &disk_and_raid), "raid still fails");
        assert!(ends(&alert(CheckRecovered, None, &["raid", "disk"]), &disk_and_raid));
        assert!(ends(&alert(CheckFailed, Some("disk"), &[]), &alert(CheckRecovered, Some("disk"), &[])));
        assert!(!ends(&alert(Reboot, None, &[]), &offline));
        assert!(ends(&alert(JobRecovered, None, &[]), &alert(JobFailed, None, &[])));
        assert!(!ends(&alert(Deleted, None, &[]), &alert(JobDown, None, &[])));
        // A later word on only some of what the earlier one ended leaves it to be sent.
        assert!(!ends(&alert(JobDown, None, &[]), &alert(JobRecovered, None, &[])), "it ends JobFailed too");
        assert!(!ends(&alert(Flapping, None, &[]), &alert(FlappingStopped, None, &["disk"])));
        assert!(!ends(&alert(JobFailed, None, &[]), &alert(JobDown, None, &[])), "two alerts in Alertmanager");
    }

    #[test]
    fn only_an_alert_the_channel_refused_for_its_body_holds_nothing_back() {
        let delivery = |answered| Delivery {
            channel: "hook".into(),
            state: DeliveryState::Pending,
            attempts: 1,
            next_attempt: 0,
            last_error: None,
            answered,
            delivered_at: None,
        };
        for answered in [None, Some(500), Some(503), Some(408), Some(429), Some(401), Some(403), Some(404), Some(302)] {
            assert!(holds_back(&delivery(answered)), "{answered:?}");
        }
        for answered in [Some(400), Some(413), Some(422)] {
            assert!(!holds_back(&delivery(answered)), "{answered:?}");
        }
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for (attempts, low, high) in [(1, 800, 1200), (2, 1600, 2400), (10, 240_000, 360_000), (60, 240_000, 360_000)] {
            for _ in 0..50 {
                let d = backoff_ms(attempts);
                assert!((low..=high).contains(&d), "attempt {attempts}: {d}");
            }
        }
    }
}
