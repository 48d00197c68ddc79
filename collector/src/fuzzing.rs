//! What the fuzz targets in `fuzz/` call; compiled only under `--cfg fuzzing`.
//!
//! `request` runs one request through routing, authorization and its handler, on a real
//! store in a temporary directory that holds an admin API key (`ADMIN_KEY`). Any panic
//! is a bug: nothing from the network may panic the collector.

use crate::alerts::{config::Channels, worker::Stats};
use crate::api::{self, Context, LoginLimiter, Method, Request};
use crate::liveness::Policy;
use crate::metrics::Metrics;
use crate::model::{ApiKeyRecord, FleetKeyRecord};
use crate::secret;
use crate::store::{Store, StoreConfig};
use std::sync::{Mutex, OnceLock};

/// An admin's API key, stored in the fuzzing store; corpus entries use it as their bearer.
pub const ADMIN_KEY: &str = "hk_0000000000000000000000000000000000000000000000000000000000000000";
/// A fleet key with every use free, stored too: Beacon heartbeats and fleet enrolments get
/// past authentication with it.
pub const FLEET_KEY: &str = "usr_0000000000000000000000000000000000000000000000000000000000000000";

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the fuzzing store");
        let store = Store::open(&StoreConfig::new(dir, 1 << 30)).expect("a store for fuzzing");
        let key = ApiKeyRecord { id: "fuzz".into(), name: None, user: None, created_at: 0 };
        let fleet = FleetKeyRecord { id: "fuzz".into(), name: "fuzz".into(), max_uses: u64::MAX, ..Default::default() };
        store
            .write(|txn| {
                txn.put_api_key(&secret::hash(ADMIN_KEY), &key)?;
                txn.put_fleet_key(&secret::hash(FLEET_KEY), &fleet)
            })
            .expect("the fuzzing keys");
        store
    })
}

/// Input, as text: `METHOD PATH[?QUERY]`, then the bearer credential, the content type,
/// and a session cookie, one per line (each may be empty), then the body.
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(5, '\n');
    let mut first = lines.next().unwrap_or("").splitn(2, ' ');
    let method = match first.next().unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let url = first.next().unwrap_or("/");
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut field = || lines.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let (bearer, content_type, session) = (field(), field(), field());
    let request = Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        bearer,
        session,
        content_type,
        host: Some("fuzz".into()),
        https: false,
        body: lines.next().unwrap_or("").to_owned(),
        local: data.len() % 2 == 0,
        forwarded: data.len() % 3 == 0,
        forwarded_https: data.len() % 5 == 0,
        seq: data.len() as u64,
        // Fields added later take their defaults, so that this harness keeps compiling.
        ..Request::default()
    };
    let (policy, channels, stats) = (Policy::default(), Channels::default(), Stats::default());
    let (metrics, logins) = (Mutex::new(Metrics::default()), Mutex::new(LoginLimiter::default()));
    let context = Context {
        now_ms: 1_795_000_000_000,
        settled_ms: 1_795_000_000_000,
        allow_anonymous: true,
        policy: &policy,
        watching_since: 0,
        channels: &channels,
        metrics: &metrics,
        alert_stats: &stats,
        logins: &logins,
        limits: &crate::limits::RateLimits::new(u32::MAX, u32::MAX),
        agent_dir: None,
        public_url: None,
        cert_pin: None,
        status_pages: &Default::default(),
    };
    let reply = store().write_unsynced(|txn| api::handle(&request, txn, &context));
    if let Ok(reply) = reply {
        assert!((200..600).contains(&reply.status), "status {}", reply.status);
        if reply.status >= 400 && reply.content_type.starts_with("application/json") {
            let body = String::from_utf8(reply.body).expect("JSON error bodies are UTF-8");
            assert!(body.contains("\"code\"") && body.contains("\"error\""), "an error without code and error: {body}");
        }
    }
}
