//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! at a phone's width, against a real collector and a real agent.
//! CI installs Debian's `chromium` and `chromium-driver`; elsewhere the test says it is skipped.

use crate::agent::Agent;
use crate::support::Collector;
use miniserde::json::{self, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// A chromedriver and one browser session; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Option<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "chromedriver not found (apt-get install chromium chromium-driver); skipping the browser test"
                );
                return None;
            }
            Err(e) => panic!("chromedriver is needed in CI (apt-get install chromium chromium-driver): {e}"),
        };
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}"), session: String::new() };
        wait_until("chromedriver to start", Duration::from_secs(20), || {
            minreq::get(format!("{}/status", browser.base)).send().is_ok()
        });
        let capabilities = r#"{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{
            "args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--window-size=390,844"]}}}}"#;
        let answer = browser.call("POST", "/session", capabilities);
        browser.session = string(field(&answer, "sessionId"));
        Some(browser)
    }

    /// A WebDriver command; returns its `value`.
    fn call(&self, method: &str, path: &str, body: &str) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "POST" => minreq::post(url).with_header("Content-Type", "application/json").with_body(body),
            "DELETE" => minreq::delete(url),
            _ => minreq::get(url),
        };
        let response = request.with_timeout(60).send().expect("chromedriver answers");
        let text = response.as_str().unwrap().to_owned();
        let parsed: Value = json::from_str(&text).unwrap_or_else(|_| panic!("not JSON from chromedriver: {text}"));
        assert_eq!(response.status_code, 200, "{method} {path}: {text}");
        field(&parsed, "value")
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", &format!(r#"{{"url":"{url}"}}"#));
    }

    /// Runs JavaScript in the page and returns what it returns.
    fn eval(&self, script: &str) -> Value {
        let body = format!(r#"{{"script":{},"args":[]}}"#, json::to_string(&script));
        self.call("POST", "/execute/sync", &body)
    }

    fn element(&self, css: &str) -> String {
        let found =
            self.call("POST", "/element", &format!(r#"{{"using":"css selector","value":{}}}"#, json::to_string(&css)));
        string(field(&found, "element-6066-11e4-a52e-4f735466cecf"))
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/value"), &format!(r#"{{"text":{}}}"#, json::to_string(&text)));
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), "{}");
    }

    /// Waits until `script` returns true in the page.
    fn wait_for(&self, what: &str, script: &str) {
        wait_until(what, Duration::from_secs(30), || matches!(self.eval(script), Value::Bool(true)));
    }

    fn text(&self, script: &str) -> String {
        string(self.eval(script))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = minreq::delete(format!("{}/session/{}", self.base, self.session)).with_timeout(10).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn field(value: &Value, name: &str) -> Value {
    match value {
        Value::Object(map) => map.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("expected a string, got {}", json::to_string(&other)),
    }
}

/// JavaScript: whether the node's row shows `status`.
fn status_is(node_id: &str, status: &str) -> String {
    format!(
        "const s = document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"] .status'); \
         return !!s && s.textContent === '{status}';"
    )
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn log_in_watch_a_node_go_offline_and_mint_a_token() {
    if std::env::var_os("HEARTH_AGENT_RUNNER").is_some() {
        return; // the browser test is about the collector; run natively only
    }
    let Some(browser) = Browser::start() else { return };
    let c = Collector::start(&[
        "--grace-secs",
        "3",
        "--min-down-secs",
        "1",
        "--allow-anonymous",
        "--anonymous-per-minute",
        "1000",
    ]);
    c.add_user("ada", "admin", PASSWORD);
    let agent = Agent::new(&format!("http://{}", c.addr));
    agent.ok(&["enroll", "--token", &c.enroll_token(), "--name", "garage-pi"]);
    let node_id = agent.ok(&["config", "show"]);
    let node_id = node_id.lines().find_map(|l| l.strip_prefix("node id:")).unwrap().trim().to_owned();
    let mut running =
        agent.command(&["run", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();

    browser.open(&format!("http://{}/", c.addr));
    browser.wait_for("the login form", "return !document.getElementById('login-view').hidden");
    browser.type_into("#username", "ada");
    browser.type_into("#password", PASSWORD);
    browser.click("#login-submit");

    browser.wait_for("the node online", &status_is(&node_id, "online"));
    assert_eq!(browser.text("return document.getElementById('who').textContent"), "ada (admin)");
    assert_eq!(
        browser.text(&format!(
            "return document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"] td:nth-child(2)').textContent"
        )),
        "garage-pi"
    );
    // How it authenticates: enrolled with a one-time token, so with its own agent token.
    assert_eq!(
        browser.text(&format!(
            "return document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"] td.c-auth').textContent"
        )),
        "own token"
    );
    // At a phone's width the table turns into cards.
    assert_eq!(browser.text("return getComputedStyle(document.querySelector('#nodes thead')).display"), "none");
    browser.eval(&format!(
        "window.hearthRow = document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"]'); return true;"
    ));

    // The agent dies without a word: online, then late, then offline.
    running.kill().unwrap();
    running.wait().unwrap();
    browser.wait_for("the node offline", &status_is(&node_id, "offline"));
    // Refreshes updated the same row in place rather than redrawing the table.
    assert!(matches!(
        browser.eval(&format!(
            "return document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"]') === window.hearthRow;"
        )),
        Value::Bool(true)
    ));
    // Filters: by status, and a search that matches nothing.
    browser.eval("const f = document.getElementById('status-filter'); f.value = 'online'; f.dispatchEvent(new Event('input')); return true;");
    assert!(matches!(browser.eval("return document.querySelectorAll('#nodes tbody tr[data-id]').length === 0 && !document.getElementById('empty').hidden;"), Value::Bool(true)));
    browser.eval("const f = document.getElementById('status-filter'); f.value = ''; f.dispatchEvent(new Event('input')); return true;");
    // The fleet header counts, with plurals right.
    browser.wait_for(
        "the fleet header",
        "return document.getElementById('fleet-header').textContent.includes('1 node1 offline');",
    );

    // A node's page, at its own address: human facts, checks, availability and history.
    browser.click(&format!("#nodes tbody tr[data-id=\"{node_id}\"]"));
    browser.wait_for(
        "the node's page",
        "return document.getElementById('detail-facts').textContent.includes('Up for') && \
         document.getElementById('detail-events').textContent.includes('Went offline');",
    );
    assert_eq!(browser.text("return location.hash"), format!("#/nodes/{node_id}"));
    assert!(matches!(
        browser.eval("return document.querySelectorAll('#detail-days .day').length === 90;"),
        Value::Bool(true)
    ));
    assert!(
        !browser.text("return document.getElementById('detail-facts').textContent").contains("uptime_secs"),
        "no raw keys"
    );
    // Operators act from it: acknowledge, silence, rename, schedule maintenance.
    browser.wait_for("the acknowledge button", "return !document.getElementById('act-ack').hidden;");
    browser.click("#act-ack");
    browser.click("#action-ok");
    browser.wait_for(
        "the acknowledgement",
        "return document.getElementById('detail-badges').textContent.includes('Acknowledged');",
    );
    browser.click("#act-silence");
    browser.type_into("#silence-reason", "moving it");
    browser.click("#action-ok");
    browser.wait_for(
        "the silence",
        "return document.getElementById('detail-badges').textContent.includes('Silenced until');",
    );
    browser.click("#act-edit");
    browser.eval("document.getElementById('edit-name').value = 'attic-pi'; return true;");
    browser.click("#action-ok");
    browser.wait_for("the new name", "return document.getElementById('detail-name').textContent.includes('attic-pi');");
    browser.click("#act-maintenance");
    browser.type_into("#maint-reason", "new disk");
    browser.click("#action-ok");
    browser.wait_for(
        "the maintenance",
        "return document.getElementById('detail-badges').textContent.includes('In maintenance until');",
    );

    // The maintenance page lists the window and the silence, and takes a new silence.
    browser.open(&format!("http://{}/#/maintenance", c.addr));
    browser.wait_for(
        "the maintenance page",
        "return document.getElementById('windows').textContent.includes('new disk') && \
         document.getElementById('silences').textContent.includes('moving it');",
    );
    browser.type_into("#sil-tag", "attic");
    browser.type_into("#sil-reason", "painting");
    browser.click("#silence-form button[type=submit]");
    browser
        .wait_for("the tag's silence", "return document.getElementById('silences').textContent.includes('tag attic');");

    // The table again: the renamed node; a click on a header sorts by it.
    browser.open(&format!("http://{}/#/", c.addr));
    browser.wait_for("the renamed row", &format!(
        "const r = document.querySelector('#nodes tbody tr[data-id=\"{node_id}\"] td:nth-child(2)'); return !!r && r.textContent === 'attic-pi';"
    ));
    // (At a phone's width the headers are hidden and a menu sorts; the header's handler is the same.)
    browser.eval("document.querySelector('#nodes thead th[data-key=name] button').click(); return true;");
    browser.wait_for(
        "the name column sorted",
        "return document.querySelector('#nodes thead th[data-key=name]').getAttribute('aria-sort') === 'ascending';",
    );
    // Refreshes after the first ask only for what changed.
    browser.wait_for(
        "a refresh of changes only",
        "return performance.getEntriesByType('resource').some((e) => e.name.includes('/api/nodes?') && e.name.includes('changed_since='));",
    );

    // Add a node: it warns that this collector serves no agent binaries and is reached on
    // loopback; the dialog mints a token and shows the one-liner.
    browser.click("#add-node");
    browser.wait_for(
        "the warnings",
        "const w = document.getElementById('add-warnings').textContent; return w.includes('--agent-dir') && w.includes('loopback');",
    );
    browser.type_into("#add-name", "new-pi");
    browser.click("#mint");
    browser.wait_for(
        "the install command",
        "return document.getElementById('install-command').textContent.includes('HEARTH_TOKEN=hen_');",
    );
    let line = browser.text("return document.getElementById('install-command').textContent");
    let server = format!("http://{}", c.addr);
    assert!(
        line.starts_with(&format!("curl -fsSL {server}/install.sh | sudo HEARTH_SERVER={server} HEARTH_TOKEN=hen_")),
        "{line}"
    );
    let key = c.api_key();
    let tokens = c.get("/api/enrollment-tokens", &key);
    assert!(
        tokens.body.contains(r#""name":"new-pi""#) && tokens.body.contains(r#""created_by":"ada""#),
        "{}",
        tokens.body
    );
    let token = line.split("HEARTH_TOKEN=").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(!tokens.body.contains(token), "the listing never shows a raw token");

    // Many nodes, one key: the same dialog mints a fleet key, in the form Beacon takes.
    browser.click("#add-fleet");
    browser.click("#mint");
    browser.wait_for(
        "the fleet key",
        "return document.getElementById('fleet-key').textContent.startsWith('usr_') && \
         document.getElementById('install-command').textContent.includes('HEARTH_TOKEN=usr_');",
    );
    let fleet_key = browser.text("return document.getElementById('fleet-key').textContent");
    let keys = c.get("/api/fleet-keys", &key);
    assert!(keys.body.contains(r#""name":"new-pi""#) && keys.body.contains(r#""max_uses":50"#), "{}", keys.body);
    assert!(!keys.body.contains(&fleet_key), "the listing never shows a raw key");
    // An admin deletes the node from its page, after a confirmation.
    browser.eval("document.getElementById('add-dialog').close(); return true;");
    browser.open(&format!("http://{}/#/nodes/{node_id}", c.addr));
    browser.wait_for("the delete button", "return !document.getElementById('act-delete').hidden;");
    browser.click("#act-delete");
    browser.wait_for("the confirmation", "return document.getElementById('action-dialog').open;");
    assert_eq!(c.get(&format!("/api/nodes/{node_id}"), &key).status, 200, "nothing is deleted before the confirmation");
    browser.click("#action-ok");
    browser
        .wait_for("the fleet again", "return location.hash === '#/' && !document.getElementById('fleet-view').hidden;");
    assert_eq!(c.get(&format!("/api/nodes/{node_id}"), &key).status, 404);

    // Hundreds of nodes: the table holds only the rows on screen, and scrolling brings the rest.
    for i in 0..400 {
        let node = format!("00000000-0000-4000-8000-{i:012}");
        let beat = crate::support::v1_heartbeat(&node).replace("pi-zero", &format!("host-{i:03}"));
        assert_eq!(c.post("/api/agent/heartbeat", &[], &beat).status, 200);
    }
    browser.wait_for("every node counted", "return document.getElementById('summary').textContent === '400 nodes';");
    let drawn = browser.eval("return document.querySelectorAll('#nodes tbody tr[data-id]').length;");
    assert!(
        matches!(drawn, Value::Number(json::Number::U64(n)) if n > 5 && n < 120),
        "rows drawn: {}",
        json::to_string(&drawn)
    );
    browser.eval("window.scrollTo(0, document.body.scrollHeight); return true;");
    browser.wait_for(
        "the last row after scrolling",
        "return !!document.querySelector('#nodes tbody tr[data-id=\"00000000-0000-4000-8000-000000000399\"]');",
    );
}

/// The Jobs tab: a job's state, its strip of recent runs, and a run's log a click away.
#[test]
fn the_jobs_view_shows_runs_and_their_logs() {
    if std::env::var_os("HEARTH_AGENT_RUNNER").is_some() {
        return;
    }
    let Some(browser) = Browser::start() else { return };
    let c = Collector::start(&[]);
    c.add_user("ada", "operator", PASSWORD);
    let key = c.api_key();
    let auth = format!("Bearer {key}");
    let job = c.post("/api/jobs", &[("Authorization", &auth)], r#"{"name":"nightly backup","period_secs":86400}"#);
    assert_eq!(job.status, 201, "{}", job.body);
    let url = job.field("ping_url");
    let path = &url[url.find("/ping/").unwrap()..];
    let ping = |suffix: &str, body: &str| {
        let r = crate::support::send(c.addr, "POST", &format!("{path}{suffix}"), &[], body.as_bytes());
        assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    };
    ping("/start", "");
    ping("", "3 snapshots kept");
    ping("/start", "");
    ping("/2", "restic: repository is locked");

    browser.open(&format!("http://{}/", c.addr));
    browser.wait_for("the login form", "return !document.getElementById('login-view').hidden");
    browser.type_into("#username", "ada");
    browser.type_into("#password", PASSWORD);
    browser.click("#login-submit");
    browser.wait_for("the navigation", "return !document.getElementById('nav').hidden");
    browser.click("#tab-jobs");
    browser.wait_for(
        "the Jobs page",
        "return location.hash === '#/jobs' && !document.getElementById('jobs-view').hidden;",
    );
    browser.wait_for(
        "the job, down",
        "const s = document.querySelector('#jobs tbody tr .status'); return !!s && s.textContent === 'down';",
    );
    // Two finished runs, oldest first: a success, then the failure.
    let strip = browser.text("return [...document.querySelectorAll('#jobs .run')].map((r) => r.className).join(' ');");
    assert_eq!(strip, "run run-success run run-fail");
    browser.click("#jobs .run-fail");
    browser.wait_for("the run's log", "return document.getElementById('log-dialog').open;");
    assert_eq!(browser.text("return document.getElementById('log-text').textContent"), "restic: repository is locked");
    assert!(browser.text("return document.getElementById('log-meta').textContent").contains("exit status 2"));
}
