//! The wire contract: V1 heartbeats, what the API reports, and the examples in docs/protocol.md.

use crate::support::*;
use miniserde::json::Value;

#[test]
fn a_v1_heartbeat_with_exactly_the_seven_fields_registers_the_node_in_anonymous_mode() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let node = new_node_id();
    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&node));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.field("status"), "ok");
    assert_eq!(r.field("node_id"), node);
    assert_eq!(r.field("device_id"), node);

    let view = collector.get(&format!("/api/nodes/{node}"), &collector.api_key());
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.field("status"), "online");
    assert_eq!(view.field("hostname"), "pi-zero");
    assert_eq!(view.field("os_profile"), "DebianVault");
    assert_eq!(view.field("vaultmesh_root"), "/var/lib/vaultmesh");
    assert!(matches!(view.json().get("cloudflare_ok"), Some(Value::Bool(true))));
    // last_seen is the collector's receive time, not the agent's 2026-01-01 timestamp.
    assert!(view.field("last_seen").as_str() > "2026-01-02", "{}", view.body);
    assert!(matches!(view.json().get("clock_skew_secs"), Some(Value::Number(_))), "{}", view.body);
}

/// V1 suggests deriving the node id from `/etc/machine-id`, whose 32 bare hex digits are a
/// UUID without its hyphens: taken as that UUID, so each form names the same node.
#[test]
fn a_v1_node_id_taken_straight_from_machine_id_is_one_node() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let node = new_node_id();
    let machine_id = node.replace('-', "").to_ascii_uppercase();
    for (seq, id) in [&machine_id, &node].into_iter().enumerate() {
        let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(id));
        assert_eq!(r.status, 200, "heartbeat {seq}: {}", r.body);
        assert_eq!(r.field("node_id"), node);
    }
    let view = collector.get(&format!("/api/nodes/{node}"), &collector.api_key());
    assert_eq!((view.status, view.field("status")), (200, "online".into()), "{}", view.body);
    let list = collector.get("/api/nodes", &collector.api_key());
    assert_eq!(list.body.matches(&node).count(), 1, "{}", list.body);
    // People may name it that way too: in a route, a silence, a maintenance window, the CLI.
    let key = collector.api_key();
    assert_eq!(collector.get(&format!("/api/nodes/{machine_id}"), &key).status, 200);
    let bearer = format!("Bearer {key}");
    let json = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let silence = format!(r#"{{"node_id":"{machine_id}","duration_secs":3600,"reason":"moving it"}}"#);
    assert_eq!(collector.post("/api/silences", &json, &silence).status, 201);
    let view = collector.get(&format!("/api/nodes/{node}"), &key);
    assert!(view.body.contains(r#""silenced_until":"20"#), "{}", view.body);
    let set = collector.admin(&["node", "set", &machine_id.to_ascii_lowercase(), "--grace-secs", "600"]);
    assert!(set.contains(&node), "{set}");
    // Anything else is still refused, naming the field.
    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&machine_id[1..]));
    assert_eq!((r.status, r.field("code")), (400, "invalid_field".into()), "{}", r.body);
}

/// A careless agent that sends an empty hostname is still listed under a name: its id.
#[test]
fn a_node_registered_with_an_empty_hostname_is_named_by_its_id() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let node = new_node_id();
    let body = v1_heartbeat(&node).replace(r#""hostname":"pi-zero""#, r#""hostname":"  ""#);
    assert_eq!(collector.post("/api/agent/heartbeat", &[], &body).status, 200);
    let view = collector.get(&format!("/api/nodes/{node}"), &collector.api_key());
    assert_eq!(view.field("name"), node, "{}", view.body);
    // V1 sends no name: the node is known by its hostname, once it has one, and as it changes.
    for hostname in ["realhost", "newhost"] {
        let body = v1_heartbeat(&node).replace(r#""hostname":"pi-zero""#, &format!(r#""hostname":"{hostname}""#));
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &body).status, 200);
        let view = collector.get(&format!("/api/nodes/{node}"), &collector.api_key());
        assert_eq!((view.field("name"), view.field("hostname")), (hostname.into(), hostname.into()), "{}", view.body);
    }
    // Nor does a blank name given at enrolment win over the hostname.
    let body = format!(r#"{{"token":"{}","hostname":"box","name":"   "}}"#, collector.enroll_token());
    let r = collector.post("/api/agents/enroll", &[], &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let view = collector.get(&format!("/api/nodes/{}", r.field("node_id")), &collector.api_key());
    assert_eq!(view.field("name"), "box", "{}", view.body);
}

#[test]
fn the_legacy_path_and_both_token_headers_are_accepted() {
    let collector = Collector::start(&[]);
    let (node, token) = collector.enroll();
    let bearer = format!("Bearer {token}");
    for (path, header) in [
        ("/api/agent/heartbeat", ("Authorization", bearer.as_str())),
        ("/agent/heartbeat", ("X-Host-Token", token.as_str())),
    ] {
        let r = collector.post(path, &[header], &heartbeat(&node, 1, "running"));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
}

#[test]
fn status_reports_stopped_after_a_stopping_heartbeat_and_online_after_the_next() {
    let collector = Collector::start(&[]);
    let (node, token) = collector.enroll();
    let key = collector.api_key();
    let auth = format!("Bearer {token}");
    let status = || collector.get(&format!("/api/nodes/{node}"), &key).field("status");
    assert_eq!(status(), "pending");
    collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, 1, "stopping"));
    assert_eq!(status(), "stopped");
    collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, 1, "running"));
    assert_eq!(status(), "online");
    let list = collector.get("/api/nodes", &key);
    assert!(list.body.contains(&node) && list.body.contains("\"arch\":\"armv6l\""), "{}", list.body);
}

/// `GET /api/nodes` pages through the fleet in id order: every node exactly once,
/// `next` on every page but the last.
#[test]
fn the_node_list_pages_through_every_node_once() {
    let collector = Collector::start(&["--allow-anonymous"]);
    let key = collector.api_key();
    let mut ids: Vec<String> = (0..5).map(|_| new_node_id()).collect();
    for id in &ids {
        assert_eq!(collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(id)).status, 200);
    }
    ids.sort();
    let (mut seen, mut pages, mut after) = (Vec::new(), 0, String::new());
    loop {
        let page = collector.get(&format!("/api/nodes?limit=2&after={after}"), &key);
        assert_eq!(page.status, 200, "{}", page.body);
        let json = page.json();
        let Some(miniserde::json::Value::Array(nodes)) = json.get("nodes") else { panic!("{}", page.body) };
        for node in nodes {
            let miniserde::json::Value::Object(node) = node else { panic!("{}", page.body) };
            let Some(miniserde::json::Value::String(id)) = node.get("node_id") else { panic!("{}", page.body) };
            seen.push(id.clone());
        }
        pages += 1;
        match json.get("next") {
            Some(miniserde::json::Value::String(next)) => after = next.clone(),
            _ => break,
        }
    }
    assert_eq!(seen, ids, "each node once, in id order");
    assert_eq!(pages, 3);
    collector.get("/api/nodes?limit=0", &key).assert_error(400, "invalid_query", "1 to 5000");
}

/// Every fenced block in docs/protocol.md whose info string reads
/// `json request METHOD PATH STATUS` is sent as written, and must get that status.
/// Placeholders `NODE_ID`, `ENROLL_TOKEN`, `FLEET_KEY` and `AGENT_TOKEN` are filled in
/// first; a Beacon heartbeat (with `device_name`) goes with the fleet key, as Beacon sends it.
#[test]
fn the_examples_in_the_protocol_document_hold() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    let collector = Collector::start(&["--allow-anonymous"]);
    let (enrolled_node, agent_token) = collector.enroll();
    let fleet_key = collector.admin(&["fleetkey", "create", "--name", "examples"]);
    let mut checked = 0;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```json request ") else {
            continue;
        };
        let words: Vec<&str> = info.split_whitespace().collect();
        let [method, path, status] = words[..] else { panic!("bad example header: {line}") };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        let fresh_node = new_node_id();
        let body = body
            .join("\n")
            .replace("ENROLLED_NODE_ID", &enrolled_node)
            .replace("NODE_ID", &fresh_node)
            .replace("ENROLL_TOKEN", &collector.enroll_token())
            .replace("FLEET_KEY", &fleet_key);
        let auth = format!("Bearer {agent_token}");
        let fleet_auth = format!("Bearer {fleet_key}");
        let headers: &[(&str, &str)] = if body.contains(&enrolled_node) {
            &[("Authorization", &auth)]
        } else if body.contains("\"device_name\"") {
            &[("Authorization", &fleet_auth), ("X-API-Key", &fleet_key)]
        } else {
            &[]
        };
        let all: Vec<(&str, &str)> =
            [("Content-Type", "application/json")].into_iter().chain(headers.iter().copied()).collect();
        let r = send(collector.addr, method, path, &all, body.as_bytes());
        assert_eq!(r.status.to_string(), status, "example {info}: {}\n{body}", r.body);
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} examples found in docs/protocol.md");
}
