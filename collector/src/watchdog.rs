//! Who watches the collector. While its request loop turns and its store takes writes,
//! it pings `--watchdog-url` every `--watchdog-secs` (any Healthchecks-style or Uptime
//! Kuma push URL, or another Hearth's job), and keeps an always-firing `HearthWatchdog`
//! alert at each Alertmanager channel with `watchdog = true`. When it dies or wedges the
//! pings stop, and whatever watches them tells someone.

use crate::alerts::config::Channels;
use crate::alerts::{channel, worker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the server says of itself: when its request loop last turned, and when the store
/// last took a write, in milliseconds since the process started.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    loop_turned: AtomicU64,
    store_wrote: AtomicU64,
}

impl Default for Health {
    fn default() -> Health {
        Health { started: Instant::now(), loop_turned: AtomicU64::new(0), store_wrote: AtomicU64::new(0) }
    }
}

/// The request loop wakes at least once a second; past this it is wedged.
const LOOP_STALE: Duration = Duration::from_secs(10);
/// The sweep writes at least every few seconds; past this the store refuses writes.
const STORE_STALE: Duration = Duration::from_secs(30);

impl Health {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The request loop turned.
    pub fn loop_turned(&self) {
        self.loop_turned.store(self.now(), Ordering::Relaxed);
    }

    /// A write reached the store.
    pub fn store_wrote(&self) {
        self.store_wrote.store(self.now(), Ordering::Relaxed);
    }

    /// Why the collector is not healthy, if it is not.
    pub fn trouble(&self) -> Option<String> {
        let now = self.now();
        let ago = |at: &AtomicU64| Duration::from_millis(now.saturating_sub(at.load(Ordering::Relaxed)));
        let (turned, wrote) = (ago(&self.loop_turned), ago(&self.store_wrote));
        if turned > LOOP_STALE {
            Some(format!("the request loop has not turned for {} s", turned.as_secs()))
        } else if wrote > STORE_STALE {
            Some(format!("the store has taken no write for {} s", wrote.as_secs()))
        } else {
            None
        }
    }
}

/// The watchdog's settings.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// Pinged while healthy (`--watchdog-url`): a credential, never logged whole.
    pub url: Option<String>,
    pub every: Duration,
    pub channels: Arc<Channels>,
    pub health: Arc<Health>,
}

impl Watchdog {
    /// Whether there is anything to do.
    pub fn wanted(&self) -> bool {
        self.url.is_some() || self.channels.list.iter().any(|c| c.watchdog)
    }

    /// Pings and posts every `every`, while healthy; runs until the process ends.
    pub fn run(self) {
        let since = hearth_wire::format_rfc3339(crate::clock::Clock::System.now_ms());
        loop {
            // Let the server settle first, and between rounds.
            std::thread::sleep(self.every);
            if let Some(trouble) = self.health.trouble() {
                log::warn!("not telling the watchdog that all is well: {trouble}");
                continue;
            }
            if let Some(url) = &self.url {
                if let Err(e) = ping(url) {
                    log::warn!("watchdog ping failed: {e}");
                }
            }
            let now = crate::clock::Clock::System.now_ms();
            for c in self.channels.list.iter().filter(|c| c.watchdog) {
                let outgoing = channel::watchdog(c, &since, now, self.every);
                if let Err(e) = worker::send(&outgoing) {
                    log::warn!("watchdog alert to channel {} failed: {e}", c.name);
                }
            }
        }
    }
}

/// One GET of the watchdog URL (with `Authorization: Basic` for a `user:password@` in it,
/// as for channels); an error names its scheme and host only.
fn ping(url: &str) -> Result<(), String> {
    let origin = channel::origin(url);
    let (url, user_password) = crate::alerts::config::split_userinfo(url)?;
    let mut request = minreq::get(url);
    if let Some(user_password) = user_password {
        request = request.with_header("Authorization", channel::basic_auth(&user_password));
    }
    let response = request
        .with_timeout(10)
        .with_follow_redirects(false)
        .with_max_status_line_length(1024)
        .with_max_headers_size(16 * 1024)
        .send()
        .map_err(|e| format!("cannot reach {origin}: {e}"))?;
    if (200..300).contains(&response.status_code) {
        Ok(())
    } else {
        // Not the reason phrase: the pinged service's own text, which may echo the request.
        Err(format!("{origin} answered {}", response.status_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_while_the_loop_turns_and_the_store_writes() {
        let health = Health::default();
        health.loop_turned();
        health.store_wrote();
        assert_eq!(health.trouble(), None);
        let old = Health { started: Instant::now() - Duration::from_secs(60), ..Health::default() };
        old.store_wrote();
        assert!(old.trouble().unwrap().contains("request loop"), "{:?}", old.trouble());
        old.loop_turned();
        old.store_wrote.store(0, Ordering::Relaxed);
        assert!(old.trouble().unwrap().contains("store"), "{:?}", old.trouble());
    }

    /// A failed ping is logged with the url's scheme and host only: not its path or
    /// credentials, even where the service's status line echoes them.
    #[test]
    fn a_failed_ping_names_only_the_host() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0; 4096];
            let n = stream.read(&mut request).unwrap();
            let request = String::from_utf8_lossy(&request[..n]).replace(['\r', '\n'], " ");
            stream.write_all(format!("HTTP/1.1 404 No route for {request}\r\nContent-Length: 0\r\n\r\n").as_bytes())
        });
        let err = ping(&format!("http://wd:pa55word@{addr}/ping/s3cret-uuid")).unwrap_err();
        echo.join().unwrap().unwrap();
        assert_eq!(err, format!("http://{addr} answered 404"));
    }
}
