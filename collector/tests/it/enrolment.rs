//! Enrolment tokens and agent tokens: one use, expiry, binding to one node.

use crate::support::*;
use std::sync::{Arc, Barrier};

#[test]
fn an_enrolled_node_heartbeats_with_its_token_and_only_its_own() {
    let collector = Collector::start(&[]);
    let (node, token) = collector.enroll();
    let (other_node, _) = collector.enroll();
    let auth = format!("Bearer {token}");
    let r = collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&node, 1, "running"));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = collector.post("/api/agent/heartbeat", &[("Authorization", &auth)], &heartbeat(&other_node, 1, "running"));
    r.assert_error(403, "forbidden", "belongs to node");
    let r = collector.post(
        "/api/agent/heartbeat",
        &[("Authorization", "Bearer hag_wrong")],
        &heartbeat(&node, 1, "running"),
    );
    r.assert_error(401, "unauthorized", "enroll");
    // An enrolled node cannot be spoofed anonymously, even where anonymous heartbeats are allowed.
    drop(collector);
    let collector = Collector::start(&["--allow-anonymous"]);
    let (node, _) = collector.enroll();
    collector.post("/api/agent/heartbeat", &[], &heartbeat(&node, 1, "running")).assert_error(
        401,
        "unauthorized",
        "must carry its agent token",
    );
}

#[test]
fn without_allow_anonymous_a_heartbeat_needs_a_token_and_is_told_how_to_enrol() {
    let collector = Collector::start(&[]);
    let r = collector.post("/api/agent/heartbeat", &[], &v1_heartbeat(&new_node_id()));
    r.assert_error(401, "unauthorized", "hearth-collector token create");
}

#[test]
fn enrolment_tokens_are_single_use_expire_and_must_exist() {
    let collector = Collector::start(&[]);
    let token = collector.enroll_token();
    let body = format!(
        r#"{{"token":"{token}","hostname":"h","os":"linux","arch":"aarch64","agent_version":"0.1.0","cpu_cores":4,"memory_mb":4096,"disk_gb":32}}"#
    );
    let first = collector.post("/api/agents/enroll", &[], &body);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.field("host_id"), first.field("node_id"));
    assert!(first.field("agent_token").len() >= 32);
    collector.post("/api/agents/enroll", &[], &body).assert_error(410, "token_used", "already used");

    let short = collector.admin(&["token", "create", "--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let body = format!(r#"{{"token":"{short}","hostname":"h"}}"#);
    collector.post("/api/agents/enroll", &[], &body).assert_error(410, "token_expired", "expired");

    let body = r#"{"token":"hen_never_minted","hostname":"h"}"#;
    collector.post("/api/agents/enroll", &[], body).assert_error(401, "unauthorized", "not recognised");
}

#[test]
fn fifty_concurrent_enrolments_with_one_token_give_exactly_one_success() {
    let collector = Collector::start(&[]);
    let token = collector.enroll_token();
    let barrier = Arc::new(Barrier::new(50));
    let addr = collector.addr;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (barrier, body) = (barrier.clone(), format!(r#"{{"token":"{token}","hostname":"h"}}"#));
            std::thread::spawn(move || {
                barrier.wait();
                send(addr, "POST", "/api/agents/enroll", &[("Content-Type", "application/json")], body.as_bytes())
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 410).count(), 49, "{statuses:?}");
}

#[test]
fn a_token_bound_to_a_node_re_enrols_it_and_revokes_the_old_agent_token() {
    let collector = Collector::start(&[]);
    let (node, old_token) = collector.enroll();
    // Enrolling an enrolled node id with an unbound token is refused: it would hijack the node.
    let body = format!(r#"{{"token":"{}","hostname":"h","node_id":"{node}"}}"#, collector.enroll_token());
    collector.post("/api/agents/enroll", &[], &body).assert_error(409, "node_exists", "--node");
    let bound = collector.admin(&["token", "create", "--node", &node]);
    let r = collector.post("/api/agents/enroll", &[], &format!(r#"{{"token":"{bound}","hostname":"h"}}"#));
    assert_eq!(r.field("node_id"), node);
    let new_auth = format!("Bearer {}", r.field("agent_token"));
    assert_eq!(
        collector.post("/api/agent/heartbeat", &[("Authorization", &new_auth)], &heartbeat(&node, 1, "running")).status,
        200
    );
    let old_auth = format!("Bearer {old_token}");
    collector
        .post("/api/agent/heartbeat", &[("Authorization", &old_auth)], &heartbeat(&node, 2, "running"))
        .assert_error(401, "unauthorized", "not valid");
}

/// Enrolling again (the installer's HEARTH_FORCE_REENROLL) with an unbound token: the
/// node proves its id is its own with its agent token, and keeps its id; anyone else's
/// agent token proves nothing.
#[test]
fn a_node_holding_its_agent_token_enrols_again_as_itself() {
    let collector = Collector::start(&[]);
    let (node, old_token) = collector.enroll();
    let (_, stranger) = collector.enroll();
    let body = |token: String| format!(r#"{{"token":"{token}","hostname":"h","node_id":"{node}"}}"#);
    let enrol =
        |auth: &str, token: String| collector.post("/api/agents/enroll", &[("Authorization", auth)], &body(token));
    let (stranger_auth, old_auth) = (format!("Bearer {stranger}"), format!("Bearer {old_token}"));
    enrol(&stranger_auth, collector.enroll_token()).assert_error(409, "node_exists", "--node");
    // A fleet key takes the same proof.
    let fleet_key = collector.admin(&["fleetkey", "create", "--name", "pis"]);
    enrol(&stranger_auth, fleet_key.clone()).assert_error(409, "node_exists", "--node");
    let r = enrol(&old_auth, fleet_key);
    assert_eq!((r.status, r.field("node_id")), (200, node.clone()), "{}", r.body);
    let old_auth = format!("Bearer {}", r.field("agent_token"));
    let r = enrol(&old_auth, collector.enroll_token());
    assert_eq!((r.status, r.field("node_id")), (200, node.clone()), "{}", r.body);
    let new_auth = format!("Bearer {}", r.field("agent_token"));
    let beat = |auth: &str, seq| {
        collector.post("/api/agent/heartbeat", &[("Authorization", auth)], &heartbeat(&node, seq, "running"))
    };
    assert_eq!(beat(&new_auth, 1).status, 200);
    beat(&old_auth, 2).assert_error(401, "unauthorized", "not valid");
    let nodes = collector.get("/api/nodes", &collector.api_key()).body;
    assert_eq!(nodes.matches(r#""node_id""#).count(), 2, "no node was added: {nodes}");

    // Its tags stay through an enrolment with a token that gives none, and one that gives
    // some replaces them (restic-manager's forced re-enrolment mints with the hostname alone).
    let tags = || collector.get(&format!("/api/nodes/{node}"), &collector.api_key()).body;
    let mut auth = new_auth;
    for (token_tags, expected) in [
        (Some("prod,london"), r#""tags":["prod","london"]"#),
        (None, r#""tags":["prod","london"]"#),
        (Some("lab"), r#""tags":["lab"]"#),
    ] {
        let token = match token_tags {
            Some(t) => collector.admin(&["token", "create", "--tags", t]),
            None => collector.enroll_token(),
        };
        let r = enrol(&auth, token);
        assert_eq!(r.status, 200, "{}", r.body);
        auth = format!("Bearer {}", r.field("agent_token"));
        assert!(tags().contains(expected), "{token_tags:?}: {}", tags());
    }
}

#[test]
fn the_api_needs_an_api_key_not_an_agent_token() {
    let collector = Collector::start(&[]);
    let (_, agent_token) = collector.enroll();
    collector.get("/api/nodes", "hk_wrong").assert_error(401, "unauthorized", "apikey create");
    collector.get("/api/nodes", &agent_token).assert_error(403, "forbidden", "API key");
    let r = send(collector.addr, "GET", "/api/nodes", &[], b"");
    r.assert_error(401, "unauthorized", "Authorization: Bearer hk_");
    let key = collector.api_key();
    assert_eq!(collector.get("/api/nodes", &key).status, 200);
    collector.get(&format!("/api/nodes/{}", new_node_id()), &key).assert_error(404, "not_found", "no node");
}

/// restic-manager's manual enrolment, with its own fields: the answer carries
/// `cert_pin_sha256`, null unless the operator configured a pin.
#[test]
fn the_enrolment_answer_carries_the_configured_certificate_pin() {
    let pin = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for (args, expected) in [(&[][..], "null".to_owned()), (&["--cert-pin", pin][..], format!("\"{pin}\""))] {
        let c = Collector::start(args);
        let body = format!(
            r#"{{"token":"{}","hostname":"newhost.example","os":"linux","arch":"amd64","agent_version":"1.0","restic_version":"0.17.0"}}"#,
            c.enroll_token()
        );
        let r = c.post("/api/agents/enroll", &[], &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!r.field("host_id").is_empty() && r.field("agent_token").starts_with("hag_"), "{}", r.body);
        assert!(r.body.contains(&format!(r#""cert_pin_sha256":{expected}"#)), "{args:?}: {}", r.body);
    }
}

/// restic-manager's poll takes the first host of the name it minted for: after a host is
/// set up again (a new node under the same name), that is the new one.
#[test]
fn the_newest_of_hosts_with_the_same_name_comes_first_in_restic_managers_list() {
    let temp = tempfile::tempdir().unwrap();
    let clock = TestClock::new(temp.path());
    let c = Collector::start_with_env("127.0.0.1:0", &temp.path().join("db"), &[], &[clock.env()]);
    let key = c.api_key();
    let auth = format!("Bearer {key}");
    let mut ids = Vec::new();
    for name in ["dup.example", "dup.example", "another.example", "dup.example"] {
        let token =
            c.post("/api/enrollment-tokens", &[("Authorization", &auth)], &format!(r#"{{"hostname":"{name}"}}"#));
        let body = format!(r#"{{"token":"{}","hostname":"machine"}}"#, token.field("token"));
        ids.push(c.post("/api/agents/enroll", &[], &body).field("node_id"));
        clock.advance_secs(60);
    }
    let hosts = c.get("/api/hosts", &key).body;
    let at = |id: &str| hosts.find(id).unwrap_or_else(|| panic!("{id} missing from {hosts}"));
    assert!(at(&ids[2]) < at(&ids[3]) && at(&ids[3]) < at(&ids[1]) && at(&ids[1]) < at(&ids[0]), "{hosts}");
}
