//! Public status pages: off until one is made, then only the documented fields, no
//! script, a CSP, and a cached rendering.

use crate::support::*;
use miniserde::json::{Object, Value};

fn beat(node: &str, name: &str, tags: &str) -> String {
    let v1 = v1_heartbeat(node);
    format!(
        r#"{},"interval_secs":10,"name":"{name}","tags":[{tags}],"ip_address":"192.168.77.23","ip_addresses":["192.168.77.23","fd00::77"],"kernel":"6.1.0-secret","os":"Debian 12","memory_mb":3906,"load":[0.5,0.4,0.3]}}"#,
        &v1[..v1.len() - 1]
    )
}

fn keys(object: &Object) -> Vec<String> {
    object.keys().cloned().collect()
}

#[test]
fn a_status_page_shows_its_documented_fields_and_nothing_else() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let collector =
        Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &["--allow-anonymous"], &[clock.env()]);
    let key = collector.api_key();
    for path in ["/status/home", "/status/home.json", "/status/x"] {
        assert_eq!(collector.get(path, "").status, 404, "{path} before any page is made");
    }
    let (shown, hidden) = (new_node_id(), new_node_id());
    assert_eq!(
        collector.post("/api/agent/heartbeat", &[], &beat(&shown, "Web server", r#""public","rack-3""#)).status,
        200
    );
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &beat(&hidden, "Private box", r#""rack-3""#)).status, 200);
    assert_eq!(
        collector.admin(&["statuspage", "create", "--slug", "home", "--title", "Home lab", "--tags", "public"]),
        "/status/home"
    );

    let page = collector.get("/status/home.json", "");
    assert_eq!(page.status, 200, "{}", page.body);
    let body = page.json();
    assert_eq!(keys(&body), ["generated_at", "nodes", "title"]);
    let Some(Value::Array(nodes)) = body.get("nodes") else { panic!("{}", page.body) };
    assert_eq!(nodes.len(), 1, "only the nodes with the page's tags: {}", page.body);
    let Value::Object(node) = &nodes[0] else { panic!() };
    assert_eq!(keys(node), ["days", "down_since", "hostname", "maintenance_until", "name", "status", "uptime_90d"]);
    assert!(matches!(node.get("hostname"), Some(Value::Null)), "no hostname unless the page allows it");
    let html = collector.get("/status/home", "");
    assert_eq!(html.status, 200);
    let csp = html.header("Content-Security-Policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!html.body.contains("<script") && html.body.contains("Web server") && html.body.contains("Home lab"));
    for (what, leak) in [
        ("the node id", shown.as_str()),
        ("the other node", hidden.as_str()),
        ("the other node's name", "Private box"),
        ("the hostname", "pi-zero"),
        ("an address", "192.168.77.23"),
        ("an address", "fd00::77"),
        ("a fact", "6.1.0-secret"),
        ("a fact", "Debian"),
        ("a tag", "public"),
        ("a tag", "rack-3"),
    ] {
        assert!(!page.body.contains(leak), "the JSON shows {what}: {}", page.body);
        assert!(!html.body.contains(leak), "the HTML shows {what}");
    }
    assert_eq!(collector.get("/status.css", "").status, 200);

    // Cached: a node that goes down shows as down only once the rendering is 10 s old.
    clock.advance_secs(25);
    let late = collector.get("/status/home.json", "").body;
    assert!(late.contains(r#""status":"up""#), "late is still up to the public: {late}");
    clock.advance_secs(8);
    let cached = collector.get("/status/home.json", "").body;
    assert_eq!(cached, late, "served again from the cache");
    clock.advance_secs(3);
    let fresh = collector.get("/status/home.json", "").body;
    assert!(fresh.contains(r#""status":"down""#), "{fresh}");

    // Over the API, with hostnames allowed; and removed, it is gone.
    let auth = format!("Bearer {key}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let made = collector.post(
        "/api/status-pages",
        &headers,
        r#"{"slug":"lab","title":"Lab","tags":["public"],"show_hostnames":true}"#,
    );
    assert_eq!(made.status, 201, "{}", made.body);
    collector.post("/api/status-pages", &headers, r#"{"slug":"lab","title":"Lab","tags":["public"]}"#).assert_error(
        409,
        "page_exists",
        "already",
    );
    collector.post("/api/status-pages", &headers, r#"{"slug":"Bad/Slug","title":"x","tags":["a"]}"#).assert_error(
        400,
        "invalid_request",
        "slug",
    );
    assert!(collector.get("/status/lab.json", "").body.contains(r#""hostname":"pi-zero""#));
    let removed = send(collector.addr, "DELETE", "/api/status-pages/lab", &[("Authorization", &auth)], b"");
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(collector.get("/status/lab.json", "").status, 404);
    let audit = collector.get("/api/audit", &key).body;
    assert!(audit.contains("status_page_created") && audit.contains("status_page_removed"), "{audit}");
}
