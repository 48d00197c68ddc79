//! One client cannot flood the fleet: registrations, token minting and the audit log
//! are bounded, and what a node says about itself cannot pass for another.

use crate::support::*;

/// `--allow-anonymous` lets nodes register by heartbeat, but only a few a minute from
/// one address; nodes that exist keep beating meanwhile.
#[test]
fn anonymous_registrations_are_capped_per_source() {
    let c = Collector::start(&["--allow-anonymous"]);
    let mut admitted = Vec::new();
    for _ in 0..10 {
        let id = new_node_id();
        let r = c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&id));
        assert_eq!(r.status, 200, "{}", r.body);
        admitted.push(id);
    }
    let r = c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
    r.assert_error(429, "too_many_requests", "anonymously");
    assert!(r.header("retry-after").is_some(), "{}", r.head);
    // The ones admitted are not held back.
    for id in &admitted {
        assert_eq!(c.post("/api/agent/heartbeat", &[], &v1_heartbeat(id)).status, 200);
    }
    let health = c.get("/healthz", "");
    assert!(health.body.contains(r#""nodes":10"#), "{}", health.body);
}

/// An enrolment token cannot take over the id of a node that registered anonymously;
/// only one minted for that node can.
#[test]
fn an_anonymous_nodes_id_is_claimed_only_by_a_token_bound_to_it() {
    let c = Collector::start(&["--allow-anonymous"]);
    let id = new_node_id();
    assert_eq!(c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&id)).status, 200);
    let token = c.enroll_token();
    let claim = format!(r#"{{"token":"{token}","hostname":"h","node_id":"{id}"}}"#);
    c.post("/api/agents/enroll", &[], &claim).assert_error(409, "node_exists", "bound to it");
    assert_eq!(c.post("/api/agent/heartbeat", &[], &v1_heartbeat(&id)).status, 200, "its agent still beats");
    let bound = c.admin(&["token", "create", "--node", &id]);
    let claim = format!(r#"{{"token":"{bound}","hostname":"h","node_id":"{id}"}}"#);
    assert_eq!(c.post("/api/agents/enroll", &[], &claim).status, 200);
}

/// Minting is rate-limited per user, so nobody can push the audit trail out by minting;
/// and the audit log is read a page at a time.
#[test]
fn minting_is_limited_and_the_audit_log_pages() {
    let c = Collector::start(&["--mints-per-hour", "60"]);
    c.add_user("otto", "operator", "a long enough password");
    c.add_user("root", "admin", "a long enough password");
    let otto = format!("Bearer {}", c.admin(&["apikey", "create", "--user", "otto"]));
    let mint = || c.post("/api/enrollment-tokens", &[("Authorization", &otto)], "{}");
    for _ in 0..60 {
        assert_eq!(mint().status, 200);
    }
    let r = mint();
    r.assert_error(429, "too_many_requests", "an hour");
    let root = format!("Bearer {}", c.admin(&["apikey", "create", "--user", "root"]));
    let mut seen = Vec::new();
    let mut path = "/api/audit?limit=25".to_owned();
    loop {
        let page = send(c.addr, "GET", &path, &[("Authorization", &root)], b"");
        assert_eq!(page.status, 200, "{}", page.body);
        let Some(miniserde::json::Value::Array(entries)) = page.json().get("entries").cloned() else {
            panic!("{}", page.body)
        };
        assert!(entries.len() <= 25);
        for entry in entries {
            let miniserde::json::Value::Object(e) = entry else { panic!() };
            let Some(miniserde::json::Value::Number(miniserde::json::Number::U64(id))) = e.get("id") else { panic!() };
            seen.push(*id);
        }
        match page.json().get("next") {
            Some(miniserde::json::Value::Number(miniserde::json::Number::U64(next))) => {
                path = format!("/api/audit?limit=25&before={next}")
            }
            _ => break,
        }
    }
    // 60 mints, 2 users and 2 keys added from the command line: every one, once, newest first.
    assert_eq!(seen.len(), 64, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    send(c.addr, "GET", "/api/audit?before=x", &[("Authorization", &root)], b"").assert_error(
        400,
        "invalid_query",
        "before",
    );
}

/// Control and bidirectional characters are taken out of what an agent reports, and
/// refused in what an operator sets, so no name can be made to look like another.
#[test]
fn names_cannot_hide_or_reorder_characters() {
    let c = Collector::start(&[]);
    let (node, token) = c.enroll();
    let auth = format!("Bearer {token}");
    let beat =
        heartbeat(&node, 1, "running").replace(r#""hostname":"pi-zero""#, r#""hostname":"web\u202e1-bew\u0007""#);
    assert!(beat.contains("u202e"), "the test's heartbeat must carry the character: {beat}");
    assert_eq!(c.post("/api/agent/heartbeat", &[("Authorization", &auth)], &beat).status, 200);
    let key = c.api_key();
    let shown = c.get(&format!("/api/nodes/{node}"), &key);
    assert_eq!(shown.field("hostname"), "web1-bew ", "{}", shown.body);
    let rename = send(
        c.addr,
        "PUT",
        &format!("/api/nodes/{node}"),
        &[("Authorization", &format!("Bearer {key}")), ("Content-Type", "application/json")],
        "{\"name\":\"db\u{202e}1\"}".as_bytes(),
    );
    rename.assert_error(400, "invalid_request", "bidirectional");
}
