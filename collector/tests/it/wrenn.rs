//! Wrenn's host flow, as its host agent sends it: an admin creates a host, the agent
//! registers with the one-time token and gets a host JWT, then beats with `X-Host-Token`
//! and an empty body. Also what must be refused, and revocation.

use crate::support::{send, Collector, Response, TestClock};
use base64ct::{Base64UrlUnpadded, Encoding};
use miniserde::json::{self, Number, Object, Value};

/// A `/v1` call with an admin's API key (`None`: no credential).
fn v1(c: &Collector, method: &str, path: &str, key: Option<&str>, body: &str) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    send(c.addr, method, path, &headers, body.as_bytes())
}

/// What the seed's host agent sends to register: no hostname, specs and an address.
fn register_body(token: &str) -> String {
    format!(
        r#"{{"token":"{token}","arch":"amd64","cpu_cores":4,"memory_mb":7962,"disk_gb":117,"address":"10.0.0.5:8080"}}"#
    )
}

/// `POST /v1/hosts/register` exactly as the seed's agent sends it: JSON, no credential.
fn register(c: &Collector, token: &str) -> Response {
    send(c.addr, "POST", "/v1/hosts/register", &[("Content-Type", "application/json")], register_body(token).as_bytes())
}

/// The seed's heartbeat: POST, no body, no Content-Type, only `X-Host-Token`.
fn beat(c: &Collector, host_id: &str, jwt: &str) -> Response {
    send(c.addr, "POST", &format!("/v1/hosts/{host_id}/heartbeat"), &[("X-Host-Token", jwt)], b"")
}

fn object(value: Option<&Value>) -> &Object {
    match value {
        Some(Value::Object(o)) => o,
        other => panic!("not an object: {other:?}"),
    }
}

fn string(o: &Object, name: &str) -> String {
    match o.get(name) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("no string {name}: {other:?}"),
    }
}

fn int(o: &Object, name: &str) -> i64 {
    match o.get(name) {
        Some(Value::Number(Number::U64(n))) => *n as i64,
        Some(Value::Number(Number::I64(n))) => *n,
        other => panic!("no integer {name}: {other:?}"),
    }
}

/// Asserts Wrenn's error shape, `{"error": {"code", "message"}}`.
fn assert_v1_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let error = object(r.json().get("error")).clone();
    assert_eq!(string(&error, "code"), code, "{}", r.body);
    assert!(!string(&error, "message").is_empty(), "{}", r.body);
}

/// Creates a host; returns its id and registration token.
fn create(c: &Collector, key: &str) -> (String, String) {
    // Wrenn's fields for teams and clouds mean nothing here, and are ignored.
    let r = v1(c, "POST", "/v1/hosts", Some(key), r#"{"type":"regular","provider":"x","availability_zone":"y"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    let host = object(r.json().get("host")).clone();
    assert_eq!(string(&host, "status"), "pending");
    (string(&host, "id"), r.field("registration_token"))
}

/// The host id the way the seed's `HostIDFromToken` reads it, with the rest of the claims.
fn claims(jwt: &str) -> Object {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
    let header = String::from_utf8(Base64UrlUnpadded::decode_vec(parts[0]).unwrap()).unwrap();
    assert_eq!(header, r#"{"alg":"HS256","typ":"JWT"}"#);
    assert_eq!(Base64UrlUnpadded::decode_vec(parts[2]).unwrap().len(), 32, "an HMAC-SHA-256 signature");
    json::from_str(&String::from_utf8(Base64UrlUnpadded::decode_vec(parts[1]).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_host_registers_beats_and_shows_online() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = c.api_key();
    let (id, token) = create(&c, &key);
    // The address is required, so not empty either; the token is not spent on the refusal.
    let empty = register_body(&token).replace("10.0.0.5:8080", "");
    let r = send(c.addr, "POST", "/v1/hosts/register", &[("Content-Type", "application/json")], empty.as_bytes());
    assert_v1_error(&r, 400, "invalid_field");

    let r = register(&c, &token);
    assert_eq!(r.status, 201, "{}", r.body);
    let host = object(r.json().get("host")).clone();
    assert_eq!((string(&host, "id"), string(&host, "address")), (id.clone(), "10.0.0.5:8080".into()));
    assert_eq!((int(&host, "cpu_cores"), int(&host, "memory_mb"), int(&host, "disk_gb")), (4, 7962, 117));
    let jwt = r.field("token");
    let claims = claims(&jwt);
    assert_eq!((string(&claims, "typ"), string(&claims, "host_id")), ("host".into(), id.clone()));
    let iat = int(&claims, "iat");
    assert_eq!(iat, clock.now_ms() / 1000);
    assert_eq!(int(&claims, "exp") - iat, 365 * 86_400, "valid a year");

    let r = beat(&c, &id, &jwt);
    assert_eq!((r.status, r.body.as_str()), (204, ""), "{}", r.head);
    assert!(!r.head.to_ascii_lowercase().contains("content-length"), "RFC 9110 8.6: {}", r.head);
    let node = c.get(&format!("/api/nodes/{id}"), &key);
    assert_eq!(node.field("status"), "online");
    // Its heartbeat carries no time of its own: no clock is judged.
    assert!(
        node.body.contains(r#""clock_skew_secs":null"#) && node.body.contains(r#""timestamp":null"#),
        "{}",
        node.body
    );
    let shown = v1(&c, "GET", &format!("/v1/hosts/{id}"), Some(&key), "");
    assert_eq!((shown.field("status"), shown.field("type")), ("online".into(), "regular".into()));
    assert!(shown.body.contains(r#""team_id":null"#), "{}", shown.body);
    let list = v1(&c, "GET", "/v1/hosts", Some(&key), "");
    assert!(list.body.starts_with('[') && list.body.contains(&id), "{}", list.body);
    // The secret never shows: not the JWT, not the registration token.
    for r in [&shown, &list, &c.get("/api/nodes", &key), &c.get("/api/enrollment-tokens", &key)] {
        assert!(!r.body.contains(&jwt) && !r.body.contains(&token), "{}", r.body);
    }

    // The token was for one registration; an hour on, a fresh one has expired.
    assert_v1_error(&register(&c, &token), 410, "token_used");
    let (_, late) = create(&c, &key);
    clock.advance_secs(3601);
    assert_v1_error(&register(&c, &late), 410, "token_expired");
    assert_v1_error(&register(&c, "hen_nonsense"), 401, "unauthorized");
    let r =
        send(c.addr, "POST", "/v1/hosts/register", &[("Content-Type", "application/json")], br#"{"address":"a:1"}"#);
    assert_v1_error(&r, 400, "invalid_field");
    // The host agent keeps beating past that hour: its JWT lasts a year.
    assert_eq!(beat(&c, &id, &jwt).status, 204);
}

/// A host that registers and is never heard from again is `online` only for a grace, as a
/// node that stops beating is; and a token issued again in the same second is a new one.
#[test]
fn a_registered_host_that_never_beats_goes_offline_and_every_token_is_new() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = c.api_key();
    let (id, token) = create(&c, &key);
    let status = || v1(&c, "GET", &format!("/v1/hosts/{id}"), Some(&key), "").field("status");
    assert_eq!(status(), "pending");
    let jwt = register(&c, &token).field("token");
    assert_eq!(status(), "online", "its first heartbeat comes an interval after registering");
    clock.advance_secs(85);
    assert_eq!(status(), "online");
    clock.advance_secs(6);
    assert_eq!(status(), "offline", "a grace (3 intervals of 30 s) registered, and never a heartbeat");
    assert_eq!(beat(&c, &id, &jwt).status, 204);
    assert_eq!(status(), "online");

    // Regenerated: pending again, its JWT refused, and not watched until it registers anew.
    let again = v1(&c, "POST", &format!("/v1/hosts/{id}/token"), Some(&key), "").field("registration_token");
    assert_eq!(status(), "pending");
    assert_v1_error(&beat(&c, &id, &jwt), 401, "unauthorized");
    clock.advance_secs(600);
    c.wait_for_sweeps(2);
    let node = c.get(&format!("/api/nodes/{id}"), &key);
    assert!(node.body.contains(r#""down_since":null"#), "a pending host was declared offline: {}", node.body);

    // Registered again, and again within the second: each token unlike the revoked one.
    let renewed = register(&c, &again).field("token");
    assert_eq!(int(&claims(&renewed), "iat"), int(&claims(&jwt), "iat") + 691, "the test clock stood still");
    let again = v1(&c, "POST", &format!("/v1/hosts/{id}/token"), Some(&key), "").field("registration_token");
    let third = register(&c, &again).field("token");
    assert_ne!(third, renewed);
    assert_v1_error(&beat(&c, &id, &renewed), 401, "unauthorized");

    // Registered again, it is watched again: silent past a grace from then, it is offline,
    // and declared so; its heartbeat ends that.
    assert_eq!(status(), "online", "registered again: a grace for its first heartbeat");
    clock.advance_secs(121);
    c.wait_for_sweeps(2);
    assert_eq!(status(), "offline");
    let node = c.get(&format!("/api/nodes/{id}"), &key);
    assert!(!node.body.contains(r#""down_since":null"#), "not watched after registering again: {}", node.body);
    assert_eq!(beat(&c, &id, &third).status, 204);
    assert_eq!(status(), "online");
}

#[test]
fn host_tokens_are_checked_and_revoked() {
    let c = Collector::start(&[]);
    let key = c.api_key();
    let (one, token) = create(&c, &key);
    let jwt = register(&c, &token).field("token");
    let (two, token_two) = create(&c, &key);
    let jwt_two = register(&c, &token_two).field("token");

    // Another host's id: 403. No token, a stranger's, a forged one: 401.
    assert_v1_error(&beat(&c, &two, &jwt), 403, "forbidden");
    let r = send(c.addr, "POST", &format!("/v1/hosts/{one}/heartbeat"), &[], b"");
    assert_v1_error(&r, 401, "unauthorized");
    assert_v1_error(&beat(&c, &one, "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"), 401, "unauthorized");
    let (head, rest) = jwt.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged = Base64UrlUnpadded::encode_string(
        format!(r#"{{"typ":"host","host_id":"{two}","iat":0,"exp":99999999999}}"#).as_bytes(),
    );
    assert_v1_error(&beat(&c, &two, &format!("{head}.{forged}.{signature}")), 401, "unauthorized");
    // A person's credential is not a host token, and a host token is no person's.
    assert_v1_error(&beat(&c, &one, &key), 401, "unauthorized");
    let r = send(c.addr, "GET", "/api/nodes", &[("X-Host-Token", &jwt)], b"");
    r.assert_error(403, "forbidden", "heartbeats");
    let bearer = format!("Bearer {jwt}");
    let r = send(c.addr, "GET", "/v1/hosts", &[("Authorization", &bearer)], b"");
    assert_v1_error(&r, 403, "forbidden");

    // A new registration token revokes the JWT; registering again gives a working one.
    let r = v1(&c, "POST", &format!("/v1/hosts/{one}/token"), Some(&key), "");
    assert_eq!(r.status, 201, "{}", r.body);
    assert_v1_error(&beat(&c, &one, &jwt), 401, "unauthorized");
    let renewed = register(&c, &r.field("registration_token")).field("token");
    assert_eq!(beat(&c, &one, &renewed).status, 204);

    // Deleting a host revokes its JWT too.
    assert_eq!(v1(&c, "DELETE", &format!("/v1/hosts/{two}"), Some(&key), "").status, 204);
    assert_v1_error(&beat(&c, &two, &jwt_two), 401, "unauthorized");
    assert_v1_error(&v1(&c, "GET", &format!("/v1/hosts/{two}"), Some(&key), ""), 404, "not_found");
    assert_eq!(c.get(&format!("/api/nodes/{two}"), &key).status, 404);
}

#[test]
fn tags_are_added_listed_and_removed() {
    let c = Collector::start(&[]);
    let key = c.api_key();
    let (id, _) = create(&c, &key);
    let tags = format!("/v1/hosts/{id}/tags");
    for tag in ["gpu", "rack-2", "gpu"] {
        assert_eq!(v1(&c, "POST", &tags, Some(&key), &format!(r#"{{"tag":"{tag}"}}"#)).status, 204);
    }
    assert_eq!(v1(&c, "GET", &tags, Some(&key), "").body, r#"["gpu","rack-2"]"#);
    assert_eq!(v1(&c, "DELETE", &format!("{tags}/gpu"), Some(&key), "").status, 204);
    assert_eq!(v1(&c, "GET", &tags, Some(&key), "").body, r#"["rack-2"]"#);
    assert_v1_error(&v1(&c, "POST", &tags, Some(&key), r#"{"tag":"no spaces"}"#), 400, "invalid_request");
    assert_v1_error(&v1(&c, "GET", "/v1/hosts/nobody/tags", Some(&key), ""), 404, "not_found");
    assert_v1_error(&v1(&c, "PUT", &tags, Some(&key), "{}"), 405, "method_not_allowed");
}

/// A host that registers and is never heard from again is declared offline after a grace
/// and one interval, as any node that goes silent: every view says so alike.
#[test]
fn a_host_registered_and_silent_is_declared_offline() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = c.api_key();
    let (id, token) = create(&c, &key);
    assert_eq!(register(&c, &token).status, 201);
    let shown = v1(&c, "GET", &format!("/v1/hosts/{id}"), Some(&key), "");
    assert!(shown.body.contains(r#""last_heartbeat_at":null"#), "registering is no heartbeat: {}", shown.body);
    clock.advance_secs(121);
    c.wait_for_sweeps(2);
    let node = c.get(&format!("/api/nodes/{id}"), &key);
    assert!(!node.body.contains(r#""down_since":null"#), "not declared: {}", node.body);
    assert_eq!(node.field("status"), "offline");
    assert_eq!(v1(&c, "GET", &format!("/v1/hosts/{id}"), Some(&key), "").field("status"), "offline");
}
