//! The API without sockets: requests straight into `handle` and `handle_read` on a real
//! store, and who may call what.

use super::*;
use crate::alerts::config::Channels;
use crate::alerts::worker::Stats;
use crate::jwt;
use crate::model::{ApiKeyRecord, HostRecord, HostState, NodeRecord, SessionRecord, UserRecord};
use crate::store::{Store, StoreConfig};

const NOW: i64 = 1_795_000_000_000;
const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";
/// A registered Wrenn host, whose JWT is [`host_jwt`].
const HOST: &str = "6ba7b810-9dad-41d1-80b4-00c04fd430c8";
const JWT_KEY: [u8; 32] = [9; 32];

fn host_jwt() -> String {
    jwt::sign(&JWT_KEY, &jwt::Claims::host(HOST, NOW / 1000, 86_400))
}

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
                txn.put_setting(store::setting::HOST_JWT_SECRET, &secret::hex(&JWT_KEY))?;
                let hash = secret::hash(&host_jwt());
                let host = NodeRecord {
                    node_id: HOST.into(),
                    name: "wrenn".into(),
                    token_hash: Some(secret::hex(&hash)),
                    ..NodeRecord::default()
                };
                txn.put_node(&host)?;
                txn.put_agent_token(&hash, HOST)?;
                let record = HostRecord {
                    state: HostState::Registered,
                    address: Some("10.0.0.9:8080".into()),
                    arch: None,
                    cpu_cores: None,
                    memory_mb: None,
                    disk_gb: None,
                    created_by: "admin".into(),
                    created_at: NOW,
                    updated_at: NOW,
                    registration_hash: None,
                };
                txn.put_host(HOST, &record)?;
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
            limits: RateLimits::default(),
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            now_ms: NOW,
            allow_anonymous: false,
            anonymous_per_minute: 10,
            policy: &self.policy,
            channels: &self.channels,
            metrics: &self.metrics,
            alert_stats: &self.stats,
            logins: &self.logins,
            limits: &self.limits,
            agent_dir: None,
            public_url: None,
            cert_pin: None,
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
        if status >= 400 && req.path.starts_with("/v1/") {
            // Wrenn's shape: {"error": {"code", "message"}}.
            assert!(body.starts_with(r#"{"error":{"code":""#) && body.contains(r#""message":""#), "{what}: {body}");
        } else if status >= 400 {
            let error: ErrorBody =
                json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not an error body: {body}"));
            assert!(!error.code.is_empty() && !error.error.is_empty(), "{what}: {body}");
            assert_eq!(error.message.as_deref(), Some(error.error.as_str()), "{what}: {body}");
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

/// Every route that needs a person or a host token, against every kind of caller. The
/// expected status per caller: anonymous, agent token, expired session, viewer, operator,
/// admin (sessions), an operator's API key, and a Wrenn host's JWT (as `X-Host-Token`
/// sends it: the same field as a bearer).
/// The rows that revoke the host's JWT (a new registration token, deleting the host) come last.
#[test]
fn who_may_call_what() {
    use Method::{Delete, Get, Post, Put};
    let h = Harness::new();
    let node = format!("/api/nodes/{NODE}");
    let token = format!("/api/nodes/{NODE}/token");
    let host = format!("/v1/hosts/{HOST}");
    let (host_tags, host_tag) = (format!("{host}/tags"), format!("{host}/tags/x"));
    let (host_beat, other_beat) = (format!("{host}/heartbeat"), format!("/v1/hosts/{NODE}/heartbeat"));
    let host_token = format!("{host}/token");
    let host_jwt = host_jwt();
    let v1_heartbeat = format!(
        r#"{{"node_id":"{HOST}","hostname":"h","os_profile":"p","cloudflare_ok":true,"services_ok":true,"vaultmesh_root":"/","timestamp":"2026-01-01T00:00:00Z"}}"#
    );
    let table: &[(Method, &str, &str, [u16; 8])] = &[
        (Get, "/api/auth/me", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/api/nodes", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, &node, "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/api/events", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/api/alerts", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/api/enrollment-tokens", "", [401, 403, 401, 403, 200, 200, 200, 403]),
        (Get, "/api/audit", "", [401, 403, 401, 403, 403, 200, 403, 403]),
        (Get, "/metrics", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/api/hosts", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, "/v1/hosts", "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, &host, "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Get, &host_tags, "", [401, 403, 401, 200, 200, 200, 200, 403]),
        (Post, &host_beat, "", [401, 401, 401, 401, 401, 401, 401, 204]),
        (Post, &other_beat, "", [401, 401, 401, 401, 401, 401, 401, 403]),
        (Post, "/v1/hosts/register", r#"{"token":"hen_x","address":"a:1"}"#, [401; 8]),
        (Post, "/api/agent/heartbeat", &v1_heartbeat, [401, 403, 401, 401, 401, 401, 401, 401]),
        (Post, "/api/enrollment-tokens", "{}", [401, 403, 401, 403, 201, 201, 201, 403]),
        (Put, &node, r#"{"name":"renamed"}"#, [401, 403, 401, 403, 200, 200, 200, 403]),
        (Post, &token, "{}", [401, 403, 401, 403, 201, 201, 201, 403]),
        (Delete, "/api/enrollment-tokens/nope", "", [401, 403, 401, 403, 404, 404, 404, 403]),
        (Post, "/v1/hosts", "{}", [401, 403, 401, 403, 201, 201, 201, 403]),
        (Post, &host_tags, r#"{"tag":"x"}"#, [401, 403, 401, 403, 204, 204, 204, 403]),
        (Delete, &host_tag, "", [401, 403, 401, 403, 204, 204, 204, 403]),
        (Delete, &node, "", [401, 403, 401, 403, 403, 200, 403, 403]),
        // The operator's new registration token revokes the JWT: from then on it is a stranger.
        (Post, &host_token, "", [401, 403, 401, 403, 201, 201, 201, 401]),
        (Delete, &host, "", [401, 403, 401, 403, 403, 204, 403, 401]),
    ];
    for (method, path, body, expected) in table {
        let callers: [(Option<&str>, Option<&str>); 8] = [
            (None, None),
            (Some("hag_node"), None),
            (None, Some("hs_expired")),
            (None, Some("hs_viewer")),
            (None, Some("hs_operator")),
            (None, Some("hs_admin")),
            (Some("hk_operator"), None),
            (Some(host_jwt.as_str()), None),
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
        (Method::Get, "/api/hosts", Work::Read),
        (Method::Get, "/v1/hosts", Work::Read),
        (Method::Get, "/v1/hosts/x/tags", Work::Read),
        (Method::Post, "/v1/hosts", Work::Write),
        (Method::Post, "/v1/hosts/register", Work::Write),
        (Method::Post, "/v1/hosts/x/heartbeat", Work::Write),
        (Method::Post, "/v1/hosts/x/token", Work::Write),
        (Method::Post, "/v1/hosts/x/tags", Work::Write),
        (Method::Delete, "/v1/hosts/x/tags/t", Work::Write),
        (Method::Delete, "/v1/hosts/x", Work::Write),
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

/// A regeneration refused by the mint limit leaves the host as it was: its JWT still
/// beats, and no token was minted or revoked (an error answer commits what was written).
#[test]
fn a_refused_regeneration_revokes_nothing() {
    let h = Harness::new();
    let ctx = h.ctx();
    let limit = crate::limits::MINTS_PER_USER;
    for _ in 0..limit.count {
        ctx.limits.take("mint:operator", limit, NOW, 0).unwrap();
    }
    let mut regenerate = request(Method::Post, &format!("/v1/hosts/{HOST}/token"), "");
    regenerate.session = Some("hs_operator".into());
    h.check(&regenerate, 429, "too_many_requests");
    let mut create = request(Method::Post, "/v1/hosts", "{}");
    create.session = Some("hs_operator".into());
    h.check(&create, 429, "too_many_requests");
    let mut beat = request(Method::Post, &format!("/v1/hosts/{HOST}/heartbeat"), "");
    beat.bearer = Some(host_jwt());
    h.check(&beat, 204, "");
    let hosts = h.store.read(|txn| txn.hosts()).unwrap();
    assert_eq!(hosts.len(), 1, "no pending host was left behind");
    assert_eq!(hosts[0].1.state, HostState::Registered);
}
