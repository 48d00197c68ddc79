//! People: users, sessions, roles, enrolment tokens over HTTP, node administration, the
//! audit log, and the table of who may call what.

use crate::support::{collector_bin, heartbeat, send, Collector, Response, TestClock};

const PASSWORD: &str = "correct horse battery";

/// A request as some caller makes it: extra headers, then the request's own.
fn call(c: &Collector, method: &str, path: &str, auth: &[(&str, String)], body: &str) -> Response {
    let mut headers: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if method != "GET" {
        headers.push(("Content-Type", "application/json"));
    }
    send(c.addr, method, path, &headers, body.as_bytes())
}

fn cookie(value: String) -> Vec<(&'static str, String)> {
    vec![("Cookie", value)]
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}

#[test]
fn every_route_against_every_caller() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    for (name, role) in [("vic", "viewer"), ("otto", "operator"), ("ada", "admin"), ("exp", "viewer")] {
        c.add_user(name, role, PASSWORD);
    }
    c.add_user("spare", "viewer", PASSWORD);
    c.add_user("keyholder", "operator", PASSWORD);
    let key = c.admin(&["apikey", "create", "--user", "keyholder"]);
    let fleet = c.admin(&["fleetkey", "create", "--name", "pis", "--ttl", "365d"]);
    // The collector's clock is a test clock in 2027; tokens minted at the command line use the real one.
    let enroll = || {
        let token = c.admin(&["token", "create", "--ttl", "1000d"]);
        let r = c.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{token}","hostname":"h"}}"#));
        (r.field("node_id"), r.field("agent_token"))
    };
    let (node, agent) = enroll();
    let (_, other_agent) = enroll();
    let (doomed, _) = enroll();
    // A session that expires: made, then a day and an hour pass.
    // Wrenn hosts: one whose JWT is a caller, one to regenerate, one to delete.
    let host = |c: &Collector| {
        let r = call(c, "POST", "/v1/hosts", &bearer(&key), "{}");
        let id = r.json().get("host").and_then(|h| match h {
            miniserde::json::Value::Object(o) => match o.get("id") {
                Some(miniserde::json::Value::String(id)) => Some(id.clone()),
                _ => None,
            },
            _ => None,
        });
        let body = format!(r#"{{"token":"{}","address":"10.0.0.7:1"}}"#, r.field("registration_token"));
        (id.unwrap(), c.post("/v1/hosts/register", &[], &body).field("token"))
    };
    let (wrenn, host_jwt) = host(&c);
    let (regen_host, _) = host(&c);
    let (doomed_host, _) = host(&c);
    let expired = c.login("exp", PASSWORD);
    clock.advance_secs(25 * 3600);
    let logged_out = c.login("vic", PASSWORD);
    assert_eq!(call(&c, "POST", "/api/auth/logout", &cookie(logged_out.clone()), "").status, 200);

    let callers: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("anonymous", vec![]),
        ("agent", bearer(&agent)),
        ("other agent", bearer(&other_agent)),
        ("viewer", cookie(c.login("vic", PASSWORD))),
        ("operator", cookie(c.login("otto", PASSWORD))),
        ("admin", cookie(c.login("ada", PASSWORD))),
        ("API key (operator)", bearer(&key)),
        ("expired session", cookie(expired)),
        ("logged-out session", cookie(logged_out)),
        ("fleet key", bearer(&fleet)),
        ("fleet key as X-API-Key", vec![("X-API-Key", fleet.clone())]),
        ("Wrenn host", vec![("X-Host-Token", host_jwt)]),
    ];
    let hb = heartbeat(&node, 1, "running");
    let beacon = r#"{"hostname":"b","device_name":"b","os":"linux","arch":"arm64"}"#;
    let job =
        c.post("/api/jobs", &[("Authorization", &format!("Bearer {key}"))], r#"{"name":"backup","period_secs":3600}"#);
    let (job_id, ping_url) = (job.field("id"), job.field("ping_url"));
    let ping_path = ping_url[ping_url.find("/ping/").unwrap()..].to_owned();
    assert_eq!(call(&c, "GET", &ping_path, &[], "").status, 200);
    let (job_path, job_ping) = (format!("/api/jobs/{job_id}"), format!("/api/jobs/{job_id}/pings/0"));
    let login = format!(r#"{{"username":"spare","password":"{PASSWORD}"}}"#);
    let (node_path, token_path, doomed_path) =
        (format!("/api/nodes/{node}"), format!("/api/nodes/{node}/token"), format!("/api/nodes/{doomed}"));
    let (host_path, host_tags, host_tag) =
        (format!("/v1/hosts/{wrenn}"), format!("/v1/hosts/{wrenn}/tags"), format!("/v1/hosts/{wrenn}/tags/x"));
    let (host_beat, other_beat) = (format!("/v1/hosts/{wrenn}/heartbeat"), format!("/v1/hosts/{regen_host}/heartbeat"));
    let (regen_path, doomed_host_path) = (format!("/v1/hosts/{regen_host}/token"), format!("/v1/hosts/{doomed_host}"));
    // Every request also says it was forwarded, as through cloudflared: /metrics is then not "local".
    #[rustfmt::skip]
    let table: Vec<(&str, &str, &str, [u16; 12])> = vec![
        //                                                         anon agent other viewer oper admin key  expired out  fleet  x-api-key host
        ("GET", "/", "",                                           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET", "/app.js", "",                                     [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET", "/install.sh", "",                                 [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET", "/agent/binary?os=linux&arch=x86_64", "",          [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        ("GET", "/healthz", "",                                    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET", "/metrics", "",                                    [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/metrics/nodes", "",                              [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("POST", "/api/agent/heartbeat", &hb,                      [401, 200, 403, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
        ("POST", "/api/agents/enroll", r#"{"token":"hen_x","hostname":"h"}"#,
                                                                   [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
        ("GET", "/api/auth/me", "",                                [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/api/nodes", "",                                  [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", &node_path, "",                                    [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/api/events", "",                                 [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/api/alerts", "",                                 [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("PUT", &node_path, r#"{"tags":["rack-1"]}"#,              [401, 403, 403, 403, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("POST", &token_path, "",                                  [401, 403, 403, 403, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/api/enrollment-tokens", "",                      [401, 403, 403, 403, 200, 200, 200, 401, 401, 403, 403, 403]),
        // A viewer gets 401 here, as restic-manager's onboarding scripts expect.
        ("POST", "/api/enrollment-tokens", r#"{"name":"new"}"#,    [401, 403, 403, 401, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("DELETE", "/api/enrollment-tokens/nope", "",              [401, 403, 403, 403, 404, 404, 404, 401, 401, 403, 403, 403]),
        ("GET", "/api/audit", "",                                  [401, 403, 403, 403, 403, 200, 403, 401, 401, 403, 403, 403]),
        ("DELETE", &doomed_path, "",                               [401, 403, 403, 403, 403, 200, 403, 401, 401, 403, 403, 403]),
        ("GET", "/api/fleet-keys", "",                             [401, 403, 403, 403, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("POST", "/api/fleet-keys", r#"{"name":"more"}"#,           [401, 403, 403, 403, 201, 201, 201, 401, 401, 403, 403, 403]),
        ("DELETE", "/api/fleet-keys/nope", "",                     [401, 403, 403, 403, 404, 404, 404, 401, 401, 403, 403, 403]),
        ("POST", "/agent/heartbeat", beacon,                       [401, 401, 401, 401, 401, 401, 401, 401, 401, 200, 200, 401]),
        ("GET", "/install/install.sh", "",                         [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET", "/agent/binary?os=linux&arch=amd64", "",           [404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404]),
        ("GET", "/api/hosts", "",                                  [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", "/v1/hosts", "",                                   [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", &host_path, "",                                    [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", &host_tags, "",                                    [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("POST", &host_beat, "",                                   [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 204]),
        ("POST", &other_beat, "",                                  [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 403]),
        ("POST", "/v1/hosts/register", r#"{"token":"hen_x","address":"a:1"}"#,
                                                                   [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401]),
        ("POST", "/v1/hosts", "{}",                                [401, 403, 403, 403, 201, 201, 201, 401, 401, 403, 403, 403]),
        ("POST", &host_tags, r#"{"tag":"x"}"#,                     [401, 403, 403, 403, 204, 204, 204, 401, 401, 403, 403, 403]),
        ("DELETE", &host_tag, "",                                  [401, 403, 403, 403, 204, 204, 204, 401, 401, 403, 403, 403]),
        ("POST", &regen_path, "",                                  [401, 403, 403, 403, 201, 201, 201, 401, 401, 403, 403, 403]),
        ("DELETE", &doomed_host_path, "",                          [401, 403, 403, 403, 403, 204, 403, 401, 401, 403, 403, 403]),
        ("GET", "/api/jobs", "",                                   [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", &job_path, "",                                     [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("GET", &job_ping, "",                                     [401, 403, 403, 200, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("POST", "/api/jobs", r#"{"name":"no schedule"}"#,         [401, 403, 403, 403, 400, 400, 400, 401, 401, 403, 403, 403]),
        ("PUT", &job_path, r#"{"paused":true}"#,                   [401, 403, 403, 403, 200, 200, 200, 401, 401, 403, 403, 403]),
        ("DELETE", "/api/jobs/nope", "",                           [401, 403, 403, 403, 404, 404, 404, 401, 401, 403, 403, 403]),
        ("POST", "/api/jobs/ping-key", "",                         [401, 403, 403, 403, 403, 201, 403, 401, 401, 403, 403, 403]),
        // A ping needs nothing but its URL, whoever sends it.
        ("GET", &ping_path, "",                                    [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("POST", "/api/auth/login", &login,                        [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("POST", "/api/auth/logout", "",                           [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &table {
        for ((caller, auth), want) in callers.iter().zip(expected) {
            let mut auth = auth.clone();
            auth.push(("X-Forwarded-For", "203.0.113.9".into()));
            let r = call(&c, method, path, &auth, body);
            if r.status != *want {
                wrong.push(format!("{method} {path} as {caller}: {} (want {want}): {}", r.status, r.body));
            }
            if r.status == 401 && r.header("WWW-Authenticate").is_none() {
                wrong.push(format!("{method} {path} as {caller}: 401 without WWW-Authenticate"));
            }
            if r.status >= 400 && path.starts_with("/v1/") {
                assert!(r.body.starts_with(r#"{"error":{"code":"#), "Wrenn's error shape: {}", r.body);
            } else if r.status >= 400 {
                r.field("code"); // every refusal is the JSON error shape
                assert_eq!(r.field("message"), r.field("error"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} pairs wrong:\n{}", wrong.len(), table.len() * callers.len(), wrong.join("\n"));
}

#[test]
fn logging_in_out_and_the_cookie() {
    let c = Collector::start(&["--trust-proxy", "cloudflare"]);
    c.add_user("ann", "operator", PASSWORD);
    let r = c.post("/api/auth/login", &[], &format!(r#"{{"username":"ann","password":"{PASSWORD}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.field("user"), r.field("role")), ("ann".into(), "operator".into()));
    let set = r.header("set-cookie").unwrap();
    for attribute in ["hearth_session=hs_", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP from loopback gets no Secure: {set}");
    // Behind cloudflared, which says the browser used HTTPS, the cookie is Secure.
    let proxied = [("X-Forwarded-Proto", "https"), ("CF-Connecting-IP", "198.51.100.7")];
    let r = c.post("/api/auth/login", &proxied, &format!(r#"{{"username":"ann","password":"{PASSWORD}"}}"#));
    assert!(r.header("set-cookie").unwrap().contains("; Secure"), "{}", r.head);
    let session = r.set_cookie().unwrap();
    let me = send(c.addr, "GET", "/api/auth/me", &[("Cookie", &session)], b"");
    assert_eq!(me.field("user"), "ann");
    // restic-manager's clients know the session as `rm_session`: it is set, and taken, under that name too.
    let cookies = |r: &Response| -> Vec<String> {
        r.head.lines().filter_map(|l| l.strip_prefix("Set-Cookie: ")).map(str::to_owned).collect()
    };
    let set = cookies(&r);
    let value = session.strip_prefix("hearth_session=").unwrap();
    assert_eq!(set.len(), 2, "{set:?}");
    assert!(set[1].starts_with(&format!("rm_session={value}; HttpOnly; SameSite=Strict;")), "{set:?}");
    let rm = format!("rm_session={value}");
    assert_eq!(send(c.addr, "GET", "/api/auth/me", &[("Cookie", &rm)], b"").field("user"), "ann");
    let out = c.post("/api/auth/logout", &[("Cookie", &rm)], "");
    let cleared = cookies(&out);
    assert!(cleared.len() == 2 && cleared.iter().all(|c| c.contains("=; ") && c.contains("Max-Age=0")), "{cleared:?}");
    send(c.addr, "GET", "/api/auth/me", &[("Cookie", &session)], b"").assert_error(401, "session_expired", "log in");

    // Without --trust-proxy, anyone could write X-Forwarded-Proto, but all it can do is
    // make the cookie stricter: behind a tunnel started without the flag, it is still Secure.
    let plain = Collector::start(&[]);
    plain.add_user("ann", "viewer", PASSWORD);
    let r = plain.post("/api/auth/login", &proxied, &format!(r#"{{"username":"ann","password":"{PASSWORD}"}}"#));
    assert!(r.header("set-cookie").unwrap().contains("; Secure"), "{}", r.head);
}

#[test]
fn failed_logins_are_limited_per_user_and_per_address() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    c.add_user("ann", "viewer", PASSWORD);
    let attempt = |user: &str, password: &str| {
        c.post("/api/auth/login", &[], &format!(r#"{{"username":"{user}","password":"{password}"}}"#))
    };
    for _ in 0..5 {
        attempt("ann", "wrong password").assert_error(401, "invalid_credentials", "wrong");
    }
    // Held back now, even with the right password: a backoff of a second, doubling.
    let r = attempt("ann", PASSWORD);
    r.assert_error(429, "too_many_attempts", "try again");
    assert_eq!(r.header("retry-after").unwrap(), "1");
    clock.advance_secs(1);
    attempt("ann", "wrong again").assert_error(401, "invalid_credentials", "wrong");
    let r = attempt("ann", PASSWORD);
    r.assert_error(429, "too_many_attempts", "try again");
    assert_eq!(r.header("retry-after").unwrap(), "2");
    clock.advance_secs(2);
    assert_eq!(attempt("ann", PASSWORD).status, 200);
    // A name that does not exist is held back the same way: the 429 tells nothing.
    for _ in 0..5 {
        attempt("ghost", "x").assert_error(401, "invalid_credentials", "wrong");
    }
    attempt("ghost", "x").assert_error(429, "too_many_attempts", "try again");
    // Over-long passwords are refused before any name is looked up, alike for both.
    let long = "p".repeat(1025);
    attempt("ann", &long).assert_error(400, "invalid_request", "1024");
    attempt("nobody", &long).assert_error(400, "invalid_request", "1024");
    // Per address: 20 failures, across names that may not even exist. A window later,
    // the failures above are forgotten.
    clock.advance_secs(15 * 60);
    for i in 0..20 {
        attempt(&format!("nobody{i}"), "x").assert_error(401, "invalid_credentials", "wrong");
    }
    attempt("someone", "x").assert_error(429, "too_many_attempts", "try again");
    // The audit log records failures under the name only when such a user exists: what
    // was typed may be a password.
    c.add_user("root", "admin", PASSWORD);
    let key = c.admin(&["apikey", "create", "--user", "root"]);
    let audit = send(c.addr, "GET", "/api/audit?limit=1000", &[("Authorization", &format!("Bearer {key}"))], b"");
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.body.contains(r#""actor":"ann""#), "{}", audit.body);
    assert!(audit.body.contains("(unknown user)"), "{}", audit.body);
    for typed in ["ghost", "nobody1", "wrong"] {
        assert!(!audit.body.contains(typed), "{typed} reached the audit log: {}", audit.body);
    }
}

/// restic-manager's onboarding scripts read 401 on a mint as "log in again as an
/// operator"; the answer says so, and nothing is minted.
#[test]
fn a_viewer_who_mints_is_told_to_log_in_as_an_operator() {
    let c = Collector::start(&[]);
    c.add_user("vic", "viewer", PASSWORD);
    let session = c.login("vic", PASSWORD);
    let json = [("Cookie", session.as_str()), ("Content-Type", "application/json")];
    let r = send(c.addr, "POST", "/api/enrollment-tokens", &json, br#"{"hostname":"newhost.example"}"#);
    r.assert_error(401, "role_too_low", "operator");
    c.add_user("otto", "operator", PASSWORD);
    let operator = c.login("otto", PASSWORD);
    let list = send(c.addr, "GET", "/api/enrollment-tokens", &[("Cookie", &operator)], b"");
    assert_eq!(list.body, r#"{"tokens":[]}"#, "nothing was minted");
}

#[test]
fn a_cross_site_form_post_is_refused() {
    let c = Collector::start(&[]);
    c.add_user("otto", "operator", PASSWORD);
    let session = c.login("otto", PASSWORD);
    // What a form on another site would send, if the browser attached the cookie.
    let form = [("Cookie", session.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let r = send(c.addr, "POST", "/api/enrollment-tokens", &form, b"name=evil");
    r.assert_error(415, "unsupported_media_type", "application/json");
    let text = [("Cookie", session.as_str()), ("Content-Type", "text/plain")];
    send(c.addr, "POST", "/api/enrollment-tokens", &text, b"{}").assert_error(415, "unsupported_media_type", "JSON");
    // A write with the cookie and no content type at all.
    let r = send(c.addr, "DELETE", "/api/enrollment-tokens/x", &[("Cookie", &session)], b"");
    r.assert_error(403, "csrf_rejected", "application/json");
    let list = send(c.addr, "GET", "/api/enrollment-tokens", &[("Cookie", &session)], b"");
    assert_eq!(list.body, r#"{"tokens":[]}"#, "nothing was minted");
    // An API key is not sent by browsers on their own, so it needs no such header.
    let key = c.admin(&["apikey", "create", "--user", "otto"]);
    let r = send(c.addr, "POST", "/api/enrollment-tokens", &[("Authorization", &format!("Bearer {key}"))], b"");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn tokens_over_http_are_shown_once_listed_without_secrets_and_revocable() {
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("collector.log");
    let c = Collector::start_logged("127.0.0.1:0", &temp.path().join("db"), &[], &[], Some(&log));
    c.add_user("otto", "operator", PASSWORD);
    let auth = cookie(c.login("otto", PASSWORD));
    let minted = call(&c, "POST", "/api/enrollment-tokens", &auth, r#"{"name":"pi-4","tags":["lab"],"ttl_secs":600}"#);
    assert_eq!(minted.status, 200, "{}", minted.body);
    let token = minted.field("token");
    assert!(token.starts_with("hen_"));
    let command = minted.field("install_command");
    let server = format!("http://{}", c.addr);
    assert_eq!(
        command,
        format!("curl -fsSL {server}/install.sh | sudo HEARTH_SERVER={server} HEARTH_TOKEN={token} sh")
    );
    let second_minted = call(&c, "POST", "/api/enrollment-tokens", &auth, "");
    let (second, second_id) = (second_minted.field("token"), second_minted.field("id"));

    // Used by a node: the listing says so and by whom.
    let r = c.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{token}","hostname":"pi"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let node_id = r.field("node_id");
    let node = call(&c, "GET", &format!("/api/nodes/{node_id}"), &auth, "");
    assert_eq!(node.field("name"), "pi-4");
    assert!(node.body.contains(r#""tags":["lab"]"#), "{}", node.body);
    let list = call(&c, "GET", "/api/enrollment-tokens", &auth, "");
    assert!(list.body.contains(r#""state":"used""#) && list.body.contains(&node_id), "{}", list.body);
    assert!(list.body.contains(r#""created_by":"otto""#), "{}", list.body);
    assert!(list.body.contains(r#""state":"valid""#), "{}", list.body);

    // Revoked: the token no longer enrols anything.
    assert_eq!(call(&c, "DELETE", &format!("/api/enrollment-tokens/{second_id}"), &auth, "").status, 200);
    let r = c.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{second}","hostname":"pi"}}"#));
    r.assert_error(401, "unauthorized", "not recognised");

    // No raw secret anywhere else: not in listings, the audit log, or the log.
    let ada = {
        c.add_user("ada", "admin", PASSWORD);
        cookie(c.login("ada", PASSWORD))
    };
    let audit = call(&c, "GET", "/api/audit", &ada, "");
    let logged = std::fs::read_to_string(&log).unwrap();
    for secret in [&token, &second, &r#"hs_"#.to_owned()] {
        for (place, text) in [("listing", &list.body), ("audit log", &audit.body), ("log", &logged)] {
            assert!(!text.contains(secret.as_str()), "{secret} appears in the {place}");
        }
    }
}

#[test]
fn nodes_are_renamed_retagged_deleted_and_re_enrolled() {
    let c = Collector::start(&[]);
    c.add_user("otto", "operator", PASSWORD);
    c.add_user("ada", "admin", PASSWORD);
    let otto = cookie(c.login("otto", PASSWORD));
    let ada = cookie(c.login("ada", PASSWORD));
    let (node, agent) = c.enroll();
    let path = format!("/api/nodes/{node}");
    let edit = r#"{"name":"garage-pi","tags":["garage","arm"],"interval_secs":60,"grace_secs":600}"#;
    let r = call(&c, "PUT", &path, &otto, edit);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#""interval_secs":60"#), "{}", r.body);
    // A heartbeat naming itself does not undo the operator's choice.
    let hb = heartbeat(&node, 1, "running").replacen('{', r#"{"name":"from-agent","tags":["x"],"#, 1);
    assert_eq!(c.post("/api/agent/heartbeat", &[("Authorization", &format!("Bearer {agent}"))], &hb).status, 200);
    let shown = call(&c, "GET", &path, &otto, "");
    assert_eq!(shown.field("name"), "garage-pi");
    assert!(shown.body.contains(r#""tags":["garage","arm"]"#), "{}", shown.body);
    for (bad, hint) in [
        (r#"{"name":""}"#, "name"),
        (r#"{"tags":["no spaces"]}"#, "tag"),
        (r#"{"interval_secs":1}"#, "interval_secs"),
        // Its agent says 30 s: judged by 10 s it would page between two heartbeats.
        (r#"{"interval_secs":10}"#, "beats every 30 s"),
        ("[1,2]", "JSON object"),
    ] {
        let r = call(&c, "PUT", &path, &otto, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.field("error").contains(hint), "{bad}: {}", r.body);
    }
    call(&c, "PUT", "/api/nodes/nope", &otto, "{}").assert_error(404, "not_found", "nope");

    // A re-enrolment token is bound to the node; using it replaces the agent token.
    let minted = call(&c, "POST", &format!("{path}/token"), &otto, "");
    assert_eq!(minted.field("node_id"), node);
    let r = c.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{}","hostname":"h"}}"#, minted.field("token")));
    assert_eq!(r.field("node_id"), node);
    let fresh = r.field("agent_token");
    let old = c.post("/api/agent/heartbeat", &[("Authorization", &format!("Bearer {agent}"))], &hb);
    old.assert_error(401, "unauthorized", "not valid");

    // Deleted: gone from the API, and its token with it.
    assert_eq!(call(&c, "DELETE", &path, &ada, "").status, 200);
    call(&c, "GET", &path, &ada, "").assert_error(404, "not_found", &node);
    let r = c.post("/api/agent/heartbeat", &[("Authorization", &format!("Bearer {fresh}"))], &hb);
    r.assert_error(401, "unauthorized", "not valid");
}

#[test]
fn the_audit_log_says_who_did_what_from_where() {
    let c = Collector::start(&["--trust-proxy", "cloudflare"]);
    c.add_user("ada", "admin", PASSWORD);
    let from = [("CF-Connecting-IP", "198.51.100.7")];
    c.post("/api/auth/login", &from, r#"{"username":"ada","password":"nope nope"}"#);
    let r = c.post("/api/auth/login", &from, &format!(r#"{{"username":"ada","password":"{PASSWORD}"}}"#));
    let ada = cookie(r.set_cookie().unwrap());
    let (node, _) = c.enroll();
    let minted = call(&c, "POST", "/api/enrollment-tokens", &ada, "");
    let id = minted.field("id");
    call(&c, "DELETE", &format!("/api/enrollment-tokens/{id}"), &ada, "");
    call(&c, "PUT", &format!("/api/nodes/{node}"), &ada, r#"{"name":"renamed"}"#);
    call(&c, "DELETE", &format!("/api/nodes/{node}"), &ada, "");
    c.admin_with_input(&["user", "passwd", "ada"], "another long password\n");
    // The password change ended ada's session.
    call(&c, "GET", "/api/audit", &ada, "").assert_error(401, "session_expired", "log in");
    let ada = cookie(c.login("ada", "another long password"));
    let audit = call(&c, "GET", "/api/audit", &ada, "");
    let mut entries: Vec<String> = Vec::new();
    let Some(miniserde::json::Value::Array(list)) = audit.json().get("entries").cloned() else {
        panic!("{}", audit.body)
    };
    for entry in list {
        let miniserde::json::Value::Object(e) = entry else { panic!() };
        let text = |k: &str| match e.get(k) {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            _ => "-".into(),
        };
        entries.push(format!("{} {} {} {}", text("action"), text("actor"), text("client"), text("target")));
    }
    entries.reverse(); // oldest first
    let expected = [
        "user_added cli local ada".to_owned(),
        "login_failed ada 198.51.100.7 -".into(),
        "login ada 198.51.100.7 -".into(),
        format!("token_minted cli local {}", entries[3].rsplit(' ').next().unwrap()),
        format!("token_minted ada 127.0.0.1 {id}"),
        format!("token_revoked ada 127.0.0.1 {id}"),
        format!("node_updated ada 127.0.0.1 {node}"),
        format!("node_deleted ada 127.0.0.1 {node}"),
        "password_changed cli local ada".into(),
        "login ada 127.0.0.1 -".into(),
    ];
    assert_eq!(entries, expected);
}

/// A refused password leaves nothing behind, not even a new store in a mistyped directory.
#[test]
fn a_user_add_refused_leaves_no_store_behind() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("typo");
    let mut child = std::process::Command::new(collector_bin())
        .args(["user", "add", "bob", "--role", "admin", "--data-dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 to 1024 characters"));
    assert!(!dir.exists(), "a store was made for a refused user");
}

/// `/api/collector` says agent binaries are served only when `--agent-dir` is a directory.
#[test]
fn agent_binaries_are_claimed_only_from_a_directory_that_exists() {
    let temp = tempfile::tempdir().unwrap();
    for (dir, served) in [(temp.path().join("missing"), false), (temp.path().to_owned(), true)] {
        let c = Collector::start(&["--agent-dir", dir.to_str().unwrap()]);
        let body = c.get("/api/collector", &c.api_key()).body;
        assert!(body.contains(&format!(r#""agent_binaries":{served}"#)), "{}: {body}", dir.display());
    }
}
