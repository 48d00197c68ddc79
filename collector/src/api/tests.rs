//! The API without sockets: requests straight into `handle` and `handle_read` on a real
//! store, and who may call what.

use super::*;
use crate::alerts::config::Channels;
use crate::alerts::worker::Stats;
use crate::jwt;
use crate::model::{ApiKeyRecord, FleetKeyRecord, HostRecord, HostState, NodeRecord, SessionRecord, UserRecord};
use crate::store::{Store, StoreConfig};

const NOW: i64 = 1_795_000_000_000;
const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";
/// A registered Wrenn host, whose JWT is [`host_jwt`].
const HOST: &str = "6ba7b810-9dad-41d1-80b4-00c04fd430c8";
const JWT_KEY: [u8; 32] = [9; 32];

fn host_jwt() -> String {
    jwt::sign(&JWT_KEY, &jwt::Claims::host(HOST, NOW / 1000, 86_400, "j".into()))
}
const JOB: &str = "job-1";
const JOB_UUID: &str = "5d8f1c1e-0c4a-4b7e-9f7e-2a1b3c4d5e6f";

/// A store holding a node with an agent token, and one user of each role, each with a
/// session (`hs_ROLE`) and an API key (`hk_ROLE`); plus an expired session, a fleet key
/// (`usr_fleet`, 3 uses) and a revoked one (`usr_revoked`).
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
                let fleet = FleetKeyRecord { id: "fk1".into(), name: "pis".into(), max_uses: 3, ..Default::default() };
                txn.put_fleet_key(&secret::hash("usr_fleet"), &fleet)?;
                let revoked = FleetKeyRecord { id: "fk2".into(), revoked_at: Some(NOW - 1), max_uses: 3, ..fleet };
                txn.put_fleet_key(&secret::hash("usr_revoked"), &revoked)?;
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
                txn.put_session(&secret::hash("hs_expired"), &old)?;
                let spec = crate::jobs::JobSpec {
                    name: "Nightly backup".into(),
                    period_secs: Some(86_400),
                    grace_secs: 3600,
                    ..Default::default()
                };
                let job = crate::jobs::new_job(spec, JOB.into(), JOB_UUID.into(), NOW, None).unwrap();
                txn.save_job(&job, None, None)?;
                txn.put_ping_key_hash(&secret::hash("hpk_key"))
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
            settled_ms: NOW,
            allow_anonymous: false,
            policy: &self.policy,
            watching_since: 0,
            channels: &self.channels,
            metrics: &self.metrics,
            alert_stats: &self.stats,
            logins: &self.logins,
            limits: &self.limits,
            agent_dir: None,
            public_url: None,
            cert_pin: None,
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
/// admin (sessions), an operator's API key, a fleet key (refused everywhere: it reads
/// nothing), and a Wrenn host's JWT (as `X-Host-Token` sends it: the same field as a bearer).
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
    let uptime = format!("/api/nodes/{NODE}/uptime");
    let ack = format!("/api/nodes/{NODE}/ack");
    let window = r#"{"reason":"patching","cron":"0 2 * * 0","duration_secs":3600}"#;
    let silence = r#"{"tag":"attic","duration_secs":3600,"reason":"moving"}"#;
    let table: &[(Method, &str, &str, [u16; 9])] = &[
        (Get, "/api/auth/me", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/nodes", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, &node, "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/events", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/alerts", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/enrollment-tokens", "", [401, 403, 401, 403, 200, 200, 200, 403, 403]),
        (Get, "/api/fleet-keys", "", [401, 403, 401, 403, 200, 200, 200, 403, 403]),
        (Get, "/api/audit", "", [401, 403, 401, 403, 403, 200, 403, 403, 403]),
        (Get, "/metrics", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/metrics/nodes", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/hosts", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/v1/hosts", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, &host, "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, &host_tags, "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Post, &host_beat, "", [401, 401, 401, 401, 401, 401, 401, 401, 204]),
        (Post, &other_beat, "", [401, 401, 401, 401, 401, 401, 401, 401, 403]),
        (Post, "/v1/hosts/register", r#"{"token":"hen_x","address":"a:1"}"#, [401; 9]),
        (Post, "/api/agent/heartbeat", &v1_heartbeat, [401, 403, 401, 401, 401, 401, 401, 401, 401]),
        // A viewer gets 401 here, as restic-manager's onboarding scripts expect.
        (Post, "/api/enrollment-tokens", "{}", [401, 403, 401, 401, 200, 200, 200, 403, 403]),
        (Post, "/api/fleet-keys", r#"{"name":"pis"}"#, [401, 403, 401, 403, 201, 201, 201, 403, 403]),
        (Put, &node, r#"{"name":"renamed"}"#, [401, 403, 401, 403, 200, 200, 200, 403, 403]),
        (Post, &token, "{}", [401, 403, 401, 403, 200, 200, 200, 403, 403]),
        (Delete, "/api/enrollment-tokens/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Delete, "/api/fleet-keys/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Post, "/v1/hosts", "{}", [401, 403, 401, 403, 201, 201, 201, 403, 403]),
        (Post, &host_tags, r#"{"tag":"x"}"#, [401, 403, 401, 403, 204, 204, 204, 403, 403]),
        (Delete, &host_tag, "", [401, 403, 401, 403, 204, 204, 204, 403, 403]),
        (Get, &uptime, "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/maintenance", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Post, "/api/maintenance", window, [401, 403, 401, 403, 201, 201, 201, 403, 403]),
        (Delete, "/api/maintenance/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Get, "/api/silences", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Post, "/api/silences", silence, [401, 403, 401, 403, 201, 201, 201, 403, 403]),
        (Delete, "/api/silences/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Post, &ack, "{}", [401, 403, 401, 403, 409, 409, 409, 403, 403]),
        (Get, "/api/status-pages", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/collector", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (
            Post,
            "/api/status-pages",
            r#"{"slug":"s","title":"S","tags":["x"]}"#,
            [401, 403, 401, 403, 201, 409, 409, 403, 403],
        ),
        (Delete, "/api/status-pages/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Get, "/status/nope", "", [404, 404, 404, 404, 404, 404, 404, 404, 404]),
        (Delete, &node, "", [401, 403, 401, 403, 403, 200, 403, 403, 403]),
        (Get, "/api/jobs", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/jobs/job-1", "", [401, 403, 401, 200, 200, 200, 200, 403, 403]),
        (Get, "/api/jobs/job-1/pings/0", "", [401, 403, 401, 404, 404, 404, 404, 403, 403]),
        (Post, "/api/jobs", r#"{"name":"no schedule"}"#, [401, 403, 401, 403, 400, 400, 400, 403, 403]),
        (Put, "/api/jobs/job-1", r#"{"paused":true}"#, [401, 403, 401, 403, 200, 200, 200, 403, 403]),
        (Delete, "/api/jobs/nope", "", [401, 403, 401, 403, 404, 404, 404, 403, 403]),
        (Post, "/api/jobs/ping-key", "", [401, 403, 401, 403, 403, 201, 403, 403, 403]),
        // The operator's new registration token revokes the JWT: from then on it is a stranger.
        (Post, &host_token, "", [401, 403, 401, 403, 201, 201, 201, 403, 401]),
        (Delete, &host, "", [401, 403, 401, 403, 403, 204, 403, 403, 401]),
    ];
    for (method, path, body, expected) in table {
        let callers: [(Option<&str>, Option<&str>); 9] = [
            (None, None),
            (Some("hag_node"), None),
            (None, Some("hs_expired")),
            (None, Some("hs_viewer")),
            (None, Some("hs_operator")),
            (None, Some("hs_admin")),
            (Some("hk_operator"), None),
            (Some("usr_fleet"), None),
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

/// A body field of the wrong type is named; a body that is no object at all is told so.
#[test]
fn a_body_field_of_the_wrong_type_is_named() {
    let h = Harness::new();
    let put = |body: &str, status: u16, says: &str| {
        let mut req = request(Method::Put, "/api/jobs/job-1", body);
        req.bearer = Some("hk_operator".into());
        h.check(&req, status, says);
    };
    put(r#"{"paused":"yes"}"#, 400, "the field `paused` has the wrong type");
    put(r#"{"grace_secs":60,"name":5}"#, 400, "the field `name` has the wrong type");
    put("[]", 400, r#""code":"invalid_json""#);
    put("{broken", 400, r#""code":"invalid_json""#);
    put(r#"{"paused":true}"#, 200, r#""status":"paused""#);
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
        (Method::Get, "/ping/x", Work::Write),
        (Method::Head, "/ping/x/start", Work::Write),
        (Method::Get, "/api/jobs", Work::Read),
        (Method::Post, "/api/jobs", Work::Write),
        (Method::Get, "/api/jobs/x/pings/1", Work::Read),
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

/// Beacon's payload, as its document gives it.
const BEACON: &str = hearth_wire::BEACON_EXAMPLE;

fn beacon(key: Option<&str>, body: &str) -> Request {
    Request { bearer: key.map(str::to_owned), ..request(Method::Post, "/agent/heartbeat", body) }
}

fn device_id(reply: &Reply) -> String {
    let ack: hearth_wire::BeaconAck = json::from_str(std::str::from_utf8(&reply.body).unwrap()).unwrap();
    ack.device_id
}

/// One node per (key, device name): the same device id on every beat, a new one for a new
/// name, each a use of the key; once the uses are gone, new names get 410 and old ones go on.
#[test]
fn each_beacon_device_of_a_key_is_one_stable_node() {
    let h = Harness::new();
    let first = device_id(&h.check(&beacon(Some("usr_fleet"), BEACON), 200, "device_id"));
    assert!(hearth_wire::is_uuid_v4(&first), "{first}");
    let again = device_id(&h.check(&beacon(Some("usr_fleet"), BEACON), 200, "device_id"));
    assert_eq!(first, again, "a device keeps its id");
    let other = BEACON.replace("my-homelab-server", "pi-2");
    let second = device_id(&h.check(&beacon(Some("usr_fleet"), &other), 200, "device_id"));
    assert_ne!(first, second);
    h.check(&beacon(Some("usr_fleet"), &BEACON.replace("my-homelab-server", "pi-3")), 200, "");
    h.check(&beacon(Some("usr_fleet"), &BEACON.replace("my-homelab-server", "pi-4")), 410, "key_used_up");
    h.check(&beacon(Some("usr_fleet"), BEACON), 200, &first);
    let mut list = request(Method::Get, &format!("/api/nodes/{first}"), "");
    list.session = Some("hs_viewer".into());
    let shown = h.check(&list, 200, r#""auth":"fleet_key""#);
    let shown = String::from_utf8_lossy(&shown.body);
    for part in [
        r#""name":"my-homelab-server""#,
        r#""metadata":{"role":"beacon-master"}"#,
        r#""arch":"amd64""#,
        "beacon-master",
        "192.168.1.100",
    ] {
        assert!(shown.contains(part), "{shown} lacks {part}");
    }
    assert!(shown.contains(r#""os_profile":null"#), "Beacon nodes show no V1 placeholders: {shown}");
    let mut enrolled = request(Method::Get, &format!("/api/nodes/{NODE}"), "");
    enrolled.session = Some("hs_viewer".into());
    h.check(&enrolled, 200, r#""auth":"anonymous""#); // the harness's node has no token_hash
}

/// A fleet key's weaker node: no key, an unknown or a revoked one gets 401; the key cannot
/// touch a node it did not create (V1 bodies with it are refused), nor read anything.
#[test]
fn a_fleet_key_does_only_what_it_must() {
    let h = Harness::new();
    h.check(&beacon(None, BEACON), 401, "fleet key");
    h.check(&beacon(Some("usr_nope"), BEACON), 401, "not recognised");
    h.check(&beacon(Some("usr_revoked"), BEACON), 401, "key_revoked");
    h.check(&beacon(Some("hag_node"), BEACON), 401, "");
    let v1 = format!(
        r#"{{"node_id":"{NODE}","hostname":"pi","os_profile":"p","cloudflare_ok":true,"services_ok":true,"vaultmesh_root":"/","timestamp":"2026-11-22T10:00:00Z"}}"#
    );
    h.check(&beacon(Some("usr_fleet"), &v1), 401, "fleet key");
    h.check(&beacon(Some("hag_node"), &v1), 200, NODE);
    let id = device_id(&h.check(&beacon(Some("usr_fleet"), BEACON), 200, ""));
    // Another key cannot reach the first key's device: same name, another node.
    h.store
        .write(|txn| {
            let key = FleetKeyRecord { id: "fk3".into(), name: "other".into(), max_uses: 3, ..Default::default() };
            txn.put_fleet_key(&secret::hash("usr_other"), &key)
        })
        .unwrap();
    let theirs = device_id(&h.check(&beacon(Some("usr_other"), BEACON), 200, ""));
    assert_ne!(id, theirs);
    // Nor may an anonymous V1 heartbeat take the device's node over.
    let takeover = v1.replace(NODE, &id);
    h.check(&beacon(None, &takeover), 401, "");
}

/// Revoking a key over the API makes its beats 401, is audited, and lists without the secret.
#[test]
fn fleet_keys_are_minted_listed_and_revoked() {
    let h = Harness::new();
    let mut mint = request(Method::Post, "/api/fleet-keys", r#"{"name":"pi fleet","tags":["pi"],"max_uses":2}"#);
    mint.session = Some("hs_operator".into());
    let minted = h.check(&mint, 201, "usr_");
    let minted: miniserde::json::Value = json::from_str(std::str::from_utf8(&minted.body).unwrap()).unwrap();
    let miniserde::json::Value::Object(fields) = minted else { panic!("not an object") };
    let text = |name: &str| match &fields[name] {
        miniserde::json::Value::String(s) => s.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let (key, id) = (text("key"), text("id"));
    assert!(key.starts_with("usr_") && key.len() == 4 + 64, "{key}");
    assert!(text("install_command").contains(&key) && text("beacon_login").contains("--api-key"));
    let mut list = request(Method::Get, "/api/fleet-keys", "");
    list.session = Some("hs_operator".into());
    let listed = h.check(&list, 200, &id);
    assert!(!String::from_utf8_lossy(&listed.body).contains(&key[4..]), "a listing never shows the key");
    let bad =
        [r#"{}"#, r#"{"name":"x","max_uses":0}"#, r#"{"name":"x","ttl_secs":10}"#, r#"{"name":"x","tags":["a b"]}"#];
    for body in bad {
        let mut req = request(Method::Post, "/api/fleet-keys", body);
        req.session = Some("hs_operator".into());
        h.check(&req, 400, "");
    }
    h.check(&beacon(Some(&key), BEACON), 200, "device_id");
    let mut revoke = request(Method::Delete, &format!("/api/fleet-keys/{id}"), "");
    revoke.session = Some("hs_operator".into());
    h.check(&revoke, 200, r#""state":"revoked""#);
    h.check(&beacon(Some(&key), BEACON), 401, "revoked");
    let mut audit = request(Method::Get, "/api/audit", "");
    audit.session = Some("hs_admin".into());
    let log = h.check(&audit, 200, "fleet_key_minted");
    assert!(String::from_utf8_lossy(&log.body).contains("fleet_key_revoked"));
    assert!(!String::from_utf8_lossy(&log.body).contains(&key[4..]), "the audit log never holds the key");
}

/// Enrolment with a fleet key: each node its own agent token, tags from the key; a revoked
/// key 401, a used-up one 410.
#[test]
fn a_fleet_key_enrols_nodes_like_a_token() {
    let h = Harness::new();
    let enrol = |key: &str, host: &str| {
        request(Method::Post, "/api/agents/enroll", &format!(r#"{{"token":"{key}","hostname":"{host}"}}"#))
    };
    let a = h.check(&enrol("usr_fleet", "pi-a"), 200, "hag_");
    let b = h.check(&enrol("usr_fleet", "pi-b"), 200, "hag_");
    let token =
        |r: &Reply| -> hearth_wire::EnrollResponse { json::from_str(std::str::from_utf8(&r.body).unwrap()).unwrap() };
    let (a, b) = (token(&a), token(&b));
    assert_ne!(a.agent_token, b.agent_token);
    assert_ne!(a.node_id, b.node_id);
    h.check(&enrol("usr_fleet", "pi-c"), 200, "");
    h.check(&enrol("usr_fleet", "pi-d"), 410, "key_used_up");
    h.check(&enrol("usr_revoked", "pi-e"), 401, "key_revoked");
    h.check(&enrol("usr_unknown", "pi-f"), 401, "");
    let expired = h.store.write(|txn| {
        let key = FleetKeyRecord {
            id: "fk4".into(),
            name: "old".into(),
            max_uses: 3,
            expires_at: Some(NOW),
            ..Default::default()
        };
        txn.put_fleet_key(&secret::hash("usr_expired"), &key)
    });
    expired.unwrap();
    h.check(&enrol("usr_expired", "pi-g"), 410, "key_expired");
    let mut node = request(Method::Get, &format!("/api/nodes/{}", a.node_id), "");
    node.session = Some("hs_viewer".into());
    let shown = h.check(&node, 200, r#""fleet_key":"fk1""#);
    assert!(String::from_utf8_lossy(&shown.body).contains(r#""auth":"agent_token""#));
}

/// A node that enrolled with a fleet key has its own token: revoking the key afterwards
/// stops new nodes, and touches none already enrolled.
#[test]
fn revoking_a_fleet_key_leaves_the_nodes_it_enrolled_alone() {
    let h = Harness::new();
    let body = r#"{"token":"usr_fleet","hostname":"pi-a"}"#;
    let reply = h.check(&request(Method::Post, "/api/agents/enroll", body), 200, "hag_");
    let enrolled: hearth_wire::EnrollResponse = json::from_str(std::str::from_utf8(&reply.body).unwrap()).unwrap();
    let mut revoke = request(Method::Delete, "/api/fleet-keys/fk1", "");
    revoke.session = Some("hs_operator".into());
    h.check(&revoke, 200, r#""state":"revoked""#);
    let beat = format!(
        r#"{{"node_id":"{}","hostname":"pi-a","os_profile":"p","cloudflare_ok":true,"services_ok":true,"vaultmesh_root":"/","timestamp":"2026-11-22T10:00:00Z"}}"#,
        enrolled.node_id
    );
    let mut hb = request(Method::Post, "/api/agent/heartbeat", &beat);
    hb.bearer = Some(enrolled.agent_token);
    h.check(&hb, 200, &enrolled.node_id);
    h.check(&request(Method::Post, "/api/agents/enroll", body), 401, "key_revoked");
}

/// A renamed device that sends back its cached `device_id` keeps its node; an id the key
/// did not make is ignored (a new node), so no key can claim another's node by its id.
#[test]
fn a_renamed_beacon_device_keeps_its_node_by_its_cached_id() {
    let h = Harness::new();
    let id = device_id(&h.check(&beacon(Some("usr_fleet"), BEACON), 200, ""));
    let renamed =
        BEACON.replace("my-homelab-server", "attic").replace("\"os\"", &format!("\"device_id\": \"{id}\", \"os\""));
    assert_eq!(device_id(&h.check(&beacon(Some("usr_fleet"), &renamed), 200, "")), id);
    h.store
        .write(|txn| {
            let key = FleetKeyRecord { id: "fk3".into(), name: "other".into(), max_uses: 3, ..Default::default() };
            txn.put_fleet_key(&secret::hash("usr_other"), &key)
        })
        .unwrap();
    let claimed = renamed.replace("attic", "thief");
    let theirs = device_id(&h.check(&beacon(Some("usr_other"), &claimed), 200, ""));
    assert_ne!(theirs, id, "another key cannot take a node by naming its id");
    let enrolled = renamed.replace(&id, NODE);
    assert_ne!(device_id(&h.check(&beacon(Some("usr_fleet"), &enrolled), 200, "")), NODE);
}

/// A regeneration refused by the mint limit leaves the host as it was: its JWT still
/// beats, and no token was minted or revoked (an error answer commits what was written).
#[test]
fn a_refused_regeneration_revokes_nothing() {
    let h = Harness::new();
    let ctx = h.ctx();
    let limit = ctx.limits.mints_per_user;
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

/// Sends a ping as a Healthchecks client would, and checks its plain-text answer.
fn ping(h: &Harness, method: Method, path: &str, body: &str, status: u16, text: &str) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let req = Request {
        method,
        path: path.into(),
        query: query.into(),
        body: body.into(),
        content_type: Some("application/x-www-form-urlencoded".into()),
        client: Some("192.0.2.1".parse().unwrap()),
        ..Request::default()
    };
    assert_eq!(work(&req), Work::Write);
    let reply = h.store.write(|txn| handle(&req, txn, &h.ctx())).unwrap();
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!((reply.status, body.as_ref()), (status, text), "{method:?} {path}?{query}");
    assert!(reply.content_type.starts_with("text/plain"), "{path}: {}", reply.content_type);
}

#[test]
fn pings_answer_as_healthchecks_does() {
    use Method::{Get, Head, Post};
    let h = Harness::new();
    let u = format!("/ping/{JOB_UUID}");
    ping(&h, Get, &u, "", 200, "OK");
    ping(&h, Head, &format!("{u}/start"), "", 200, "OK");
    ping(&h, Post, &format!("{u}/fail"), "backup failed: disk full", 200, "OK");
    ping(&h, Post, &format!("{u}/log"), "a line", 200, "OK");
    ping(&h, Get, &format!("{u}/0"), "", 200, "OK");
    ping(&h, Get, &format!("{u}/255"), "", 200, "OK");
    ping(&h, Get, &format!("{u}/256"), "", 400, "invalid url format");
    ping(&h, Get, &format!("{u}?rid=not-a-uuid"), "", 400, "invalid uuid format for rid");
    ping(&h, Get, &format!("{u}/nope"), "", 404, "not found");
    ping(&h, Get, "/ping/00000000-0000-4000-8000-000000000000", "", 404, "not found");
    // The slug form, with the ping key; a wrong key is as unknown as a wrong slug.
    ping(&h, Get, "/ping/hpk_key/nightly-backup/start", "", 200, "OK");
    ping(&h, Get, "/ping/hpk_wrong/nightly-backup", "", 404, "not found");
    ping(&h, Get, "/ping/hpk_key/weekly", "", 404, "not found");
    ping(&h, Post, "/ping/hpk_key/weekly?create=1", "", 201, "Created");
    ping(&h, Post, "/ping/hpk_key/weekly?create=1", "", 200, "OK");
    let job = h.store.read(|txn| txn.job_by_slug("weekly")).unwrap().unwrap();
    assert_eq!((job.period_secs, job.grace_secs, job.pings), (Some(86_400), 3600, 2));
    // The fail ping's body is its log; the job is down and an event says so.
    let pings = h.store.read(|txn| txn.job_pings(JOB, 100)).unwrap();
    let fail = pings.iter().find(|p| p.kind == crate::model::PingKind::Fail && p.exit_status.is_none()).unwrap();
    assert_eq!(fail.log, "backup failed: disk full");
    let events = h.store.read(|txn| txn.events(Some(JOB), i64::MIN, 100)).unwrap();
    assert_eq!(events[0].kind, crate::model::EventKind::JobFailed, "{events:?}");
}

/// However many pings come, a job keeps its last 100, each log cut to 10 KB.
#[test]
fn a_ping_flood_keeps_the_store_bounded() {
    let h = Harness::new();
    let log = "x".repeat(crate::api::MAX_PING_BODY);
    for i in 0..250 {
        let body = if i % 2 == 0 { log.as_str() } else { "" };
        ping(&h, Method::Post, &format!("/ping/{JOB_UUID}"), body, 200, "OK");
    }
    let pings = h.store.read(|txn| txn.job_pings(JOB, 1000)).unwrap();
    assert_eq!(pings.len(), 100);
    assert_eq!((pings[0].n, pings[99].n), (249, 150), "the newest kept, newest first");
    assert!(pings.iter().all(|p| p.log.len() <= crate::jobs::LOG_KEPT));
    assert_eq!(pings[1].log_bytes, crate::api::MAX_PING_BODY as u64);
}

/// A heartbeat parsed ahead (`prepare`, on the connection's thread) is answered exactly as
/// one parsed by its handler: Hearth's and Beacon's alike, a bad body still only after
/// the sender is authenticated, and a batch run again (the map grew) parses it anew.
#[test]
fn heartbeats_parsed_ahead_are_answered_as_if_parsed_in_the_handler() {
    let h = Harness::new();
    let body = include_str!("../../../xtask/bench/heartbeat.json")
        .replace("NODE_ID", NODE)
        .replace("TIMESTAMP", "2026-11-20T10:00:00Z")
        .replace("SEQ", "1");
    let beat = |bearer: Option<&str>, body: &str| Request {
        bearer: bearer.map(str::to_owned),
        ..request(Method::Post, hearth_wire::paths::HEARTBEAT, body)
    };
    for prepared in [false, true] {
        let ahead = |req: Request| if prepared { prepare(req) } else { req };
        let ok = ahead(beat(Some("hag_node"), &body));
        assert_eq!(ok.beat.0.lock().unwrap().is_some(), prepared);
        h.check(&ok, 200, "");
        // Taken by the first run: a second run of the same request parses the body itself.
        h.check(&ok, 200, "");
        h.check(&ahead(beat(Some("hag_stranger"), "{not json")), 401, "not valid");
        h.check(&ahead(beat(None, "{not json")), 401, "agent token");
        h.check(&ahead(beat(Some("hag_node"), "{not json")), 400, "not valid JSON");
        h.check(&ahead(beat(Some("hag_node"), r#"{"node_id":"x"}"#)), 400, "node_id");
        h.check(&ahead(beacon(Some("usr_fleet"), BEACON)), 200, "device_id");
        h.check(&ahead(beacon(Some("usr_revoked"), "{}")), 401, "");
    }
}
