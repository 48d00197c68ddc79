//! The API without sockets: requests straight into `handle` and `handle_read` on a real
//! store, and who may call what.

use super::*;
use crate::alerts::config::Channels;
use crate::alerts::worker::Stats;
use crate::model::{ApiKeyRecord, NodeRecord, SessionRecord, UserRecord};
use crate::store::{Store, StoreConfig};

const NOW: i64 = 1_795_000_000_000;
const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";

/// A store holding a node with an agent token, and one user of each role, each with a
/// session (`hs_ROLE`) and an API key (`hk_ROLE`); plus an expired session.
struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    policy: Policy,
    channels: Channels,
    metrics: Mutex<Metrics>,
    stats: Stats,
    logins: Mutex<LoginLimiter>,
    limits: RateLimits,
    status_pages: status::Cache,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path(), 64 << 20)).unwrap();
        store
            .write(|txn| {
                txn.put_node(&NodeRecord { node_id: NODE.into(), name: "pi".into(), ..NodeRecord::default() })?;
                txn.put_agent_token(&secret::hash("hag_node"), NODE)?;
                for role in ["viewer", "operator", "admin"] {
                    let user = UserRecord { name: role.into(), role: role.into(), ..UserRecord::default() };
                    txn.put_user(&user)?;
                    let session = SessionRecord { user: role.into(), created_at: NOW, expires_at: NOW + 60_000 };
                    txn.put_session(&secret::hash(&format!("hs_{role}")), &session)?;
                    let key = ApiKeyRecord { id: role.into(), user: Some(role.into()), ..ApiKeyRecord::default() };
                    txn.put_api_key(&secret::hash(&format!("hk_{role}")), &key)?;
                }
                let old = SessionRecord { user: "admin".into(), created_at: 0, expires_at: NOW - 1 };
                txn.put_session(&secret::hash("hs_expired"), &old)
            })
            .unwrap();
        Harness {
            _dir: dir,
            store,
            policy: Policy::default(),
            channels: Channels::default(),
            metrics: Mutex::default(),
            stats: Stats::default(),
            logins: Mutex::default(),
            limits: RateLimits::new(10, 600),
            status_pages: status::Cache::default(),
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            now_ms: NOW,
            allow_anonymous: false,
            policy: &self.policy,
            channels: &self.channels,
            metrics: &self.metrics,
            alert_stats: &self.stats,
            logins: &self.logins,
            limits: &self.limits,
            agent_dir: None,
            public_url: None,
            status_pages: &self.status_pages,
        }
    }

    /// Sends `req` the way the server would (reads on a snapshot, writes in a
    /// transaction) and checks its status and that its body holds `contains`.
    fn check(&self, req: &Request, status: u16, contains: &str) -> Reply {
        let ctx = self.ctx();
        let reply = match work(req) {
            Work::Read => self.store.read(|txn| handle_read(req, txn, &ctx)),
            Work::Write | Work::Login => self.store.write(|txn| handle(req, txn, &ctx)),
        }
        .unwrap();
        let body = String::from_utf8_lossy(&reply.body);
        let what = format!("{:?} {} with {:?}/{:?}", req.method, req.path, req.bearer, req.session);
        assert_eq!(reply.status, status, "{what}: {body}");
        assert!(body.contains(contains), "{what}: {body} lacks {contains:?}");
        if status >= 400 {
            let error: ErrorBody =
                json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not an error body: {body}"));
            assert!(!error.code.is_empty() && !error.error.is_empty(), "{what}: {body}");
        }
        reply
    }
}

fn request(method: Method, path: &str, body: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method,
        path: path.into(),
        query: query.into(),
        body: body.into(),
        content_type: Some("application/json".into()),
        client: Some("192.0.2.1".parse().unwrap()),
        ..Request::default()
    }
}

/// Every route that needs a person, against every kind of caller. The expected status
/// per caller: anonymous, agent token, expired session, viewer, operator, admin (sessions),
/// and an operator's API key.
#[test]
fn who_may_call_what() {
    use Method::{Delete, Get, Post, Put};
    let h = Harness::new();
    let node = format!("/api/nodes/{NODE}");
    let token = format!("/api/nodes/{NODE}/token");
    let uptime = format!("/api/nodes/{NODE}/uptime");
    let ack = format!("/api/nodes/{NODE}/ack");
    let window = r#"{"reason":"patching","cron":"0 2 * * 0","duration_secs":3600}"#;
    let silence = r#"{"tag":"attic","duration_secs":3600,"reason":"moving"}"#;
    let table: &[(Method, &str, &str, [u16; 7])] = &[
        (Get, "/api/auth/me", "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, "/api/nodes", "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, &node, "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, &uptime, "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, "/api/events", "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, "/api/alerts", "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, "/api/enrollment-tokens", "", [401, 403, 401, 403, 200, 200, 200]),
        (Get, "/api/audit", "", [401, 403, 401, 403, 403, 200, 403]),
        (Get, "/metrics", "", [401, 403, 401, 200, 200, 200, 200]),
        (Post, "/api/enrollment-tokens", "{}", [401, 403, 401, 403, 201, 201, 201]),
        (Put, &node, r#"{"name":"renamed"}"#, [401, 403, 401, 403, 200, 200, 200]),
        (Post, &token, "{}", [401, 403, 401, 403, 201, 201, 201]),
        (Delete, "/api/enrollment-tokens/nope", "", [401, 403, 401, 403, 404, 404, 404]),
        (Get, "/api/maintenance", "", [401, 403, 401, 200, 200, 200, 200]),
        (Post, "/api/maintenance", window, [401, 403, 401, 403, 201, 201, 201]),
        (Delete, "/api/maintenance/nope", "", [401, 403, 401, 403, 404, 404, 404]),
        (Get, "/api/silences", "", [401, 403, 401, 200, 200, 200, 200]),
        (Post, "/api/silences", silence, [401, 403, 401, 403, 201, 201, 201]),
        (Delete, "/api/silences/nope", "", [401, 403, 401, 403, 404, 404, 404]),
        (Post, &ack, "{}", [401, 403, 401, 403, 409, 409, 409]),
        (Get, "/api/status-pages", "", [401, 403, 401, 200, 200, 200, 200]),
        (Get, "/api/collector", "", [401, 403, 401, 200, 200, 200, 200]),
        (Post, "/api/status-pages", r#"{"slug":"s","title":"S","tags":["x"]}"#, [401, 403, 401, 403, 201, 409, 409]),
        (Delete, "/api/status-pages/nope", "", [401, 403, 401, 403, 404, 404, 404]),
        (Get, "/status/nope", "", [404, 404, 404, 404, 404, 404, 404]),
        (Delete, &node, "", [401, 403, 401, 403, 403, 200, 403]),
    ];
    for (method, path, body, expected) in table {
        let callers: [(Option<&str>, Option<&str>); 7] = [
            (None, None),
            (Some("hag_node"), None),
            (None, Some("hs_expired")),
            (None, Some("hs_viewer")),
            (None, Some("hs_operator")),
            (None, Some("hs_admin")),
            (Some("hk_operator"), None),
        ];
        for ((bearer, session), status) in callers.into_iter().zip(expected) {
            let mut req = request(*method, path, body);
            req.bearer = bearer.map(str::to_owned);
            req.session = session.map(str::to_owned);
            h.check(&req, *status, "");
        }
    }
}

#[test]
fn reads_and_writes_go_their_own_ways() {
    let cases = [
        (Method::Get, "/api/nodes", Work::Read),
        (Method::Get, "/metrics/nodes", Work::Read),
        (Method::Get, "/nope", Work::Read),
        (Method::Post, "/api/nodes", Work::Read), // a 405, answered without the store
        (Method::Post, "/api/agent/heartbeat", Work::Write),
        (Method::Post, "/api/agents/enroll", Work::Write),
        (Method::Post, "/api/auth/login", Work::Login),
        (Method::Post, "/api/auth/logout", Work::Write),
        (Method::Delete, "/api/nodes/x", Work::Write),
        (Method::Get, "/api/nodes/x/uptime", Work::Read),
        (Method::Post, "/api/nodes/x/ack", Work::Write),
        (Method::Get, "/api/maintenance", Work::Read),
        (Method::Post, "/api/maintenance", Work::Write),
        (Method::Delete, "/api/maintenance/x", Work::Write),
        (Method::Get, "/api/silences", Work::Read),
        (Method::Post, "/api/silences", Work::Write),
        (Method::Delete, "/api/silences/x", Work::Write),
        (Method::Get, "/status/home", Work::Read),
        (Method::Get, "/status/home.json", Work::Read),
        (Method::Post, "/api/status-pages", Work::Write),
    ];
    for (method, path, expected) in cases {
        assert_eq!(work(&request(method, path, "")), expected, "{method:?} {path}");
    }
}

#[test]
fn a_write_sent_down_the_read_path_is_refused_not_done() {
    let h = Harness::new();
    let mut req = request(Method::Delete, &format!("/api/nodes/{NODE}"), "");
    req.session = Some("hs_admin".into());
    let ctx = h.ctx();
    let reply = h.store.read(|txn| handle_read(&req, txn, &ctx)).unwrap();
    assert_eq!(reply.status, 500);
    h.check(&request(Method::Get, &format!("/api/nodes/{NODE}"), ""), 401, "");
    let mut still = request(Method::Get, &format!("/api/nodes/{NODE}"), "");
    still.session = Some("hs_viewer".into());
    h.check(&still, 200, NODE);
}
