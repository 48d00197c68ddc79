//! The HTTP API as plain functions: a parsed request and a transaction in, a reply out.
//! No sockets here; `http` moves bytes, this module decides what they mean.

use crate::alerts::{self, config::Channels, worker::Stats};
use crate::liveness::{self, Policy};
use crate::metrics::{self, Metrics};
use crate::model::{AlertRecord, EnrolledFacts, EventRecord, NodeRecord, NodeView};
use crate::secret::{self, AGENT_PREFIX, API_KEY_PREFIX};
use crate::store::{self, Txn};
use hearth_wire::{EnrollRequest, EnrollResponse, ErrorBody, Heartbeat, HeartbeatAck, WireError};
use heed::RwTxn;
use miniserde::{json, Serialize};

/// The largest request body the collector reads, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

/// A request, read off the wire and not yet interpreted.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
    /// What followed `?` in the URL, if anything.
    pub query: String,
    /// The credential from `Authorization: Bearer …` or `X-Host-Token: …`.
    pub bearer: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    /// From loopback, and not forwarded by a proxy (no `X-Forwarded-For`/`CF-Connecting-IP`).
    pub local: bool,
    /// Who sent it: the peer's address, or with `--trust-proxy cloudflare` the one
    /// `CF-Connecting-IP` names. `None` over a Unix socket with no trusted proxy header.
    pub client: Option<std::net::IpAddr>,
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Methods for the `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        Reply { status, content_type: "application/json", body: json::to_string(value), allow: None }
    }
}

/// The settings and the moment a batch of requests is handled with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Unix milliseconds by the collector's clock.
    pub now_ms: i64,
    pub allow_anonymous: bool,
    pub policy: &'a Policy,
    pub channels: &'a Channels,
    pub metrics: &'a Metrics,
    pub alert_stats: &'a Stats,
}

/// An error answer: status, stable code, and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), allow: None }
    }

    pub fn body_too_large() -> ApiError {
        ApiError::new(413, "body_too_large", format!("the request body is larger than {MAX_BODY} bytes"))
    }

    pub fn storage(e: &store::Error) -> ApiError {
        match e {
            store::Error::Full => ApiError::new(
                507,
                "storage_full",
                "the collector's database is full; nothing was saved. Free disk space or raise --max-db-mb",
            ),
            other => {
                log::error!("{other}");
                ApiError::new(500, "internal", "the collector could not use its database; nothing was saved")
            }
        }
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn into_reply(self) -> Reply {
        let body = ErrorBody { code: self.code.to_owned(), error: self.message };
        Reply { allow: self.allow, ..Reply::json(self.status, &body) }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> ApiError {
        ApiError::new(400, e.code(), e.to_string())
    }
}

/// Why a handler stopped: an answer for this request, or a store failure that ends the whole batch.
enum Failure {
    Api(ApiError),
    Store(store::Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

impl From<WireError> for Failure {
    fn from(e: WireError) -> Failure {
        Failure::Api(e.into())
    }
}

impl From<store::Error> for Failure {
    fn from(e: store::Error) -> Failure {
        match e {
            // A damaged record fails this request only; the transaction itself is fine.
            store::Error::Corrupt(_) => Failure::Api(ApiError::storage(&e)),
            other => Failure::Store(other),
        }
    }
}

type Handled = Result<Reply, Failure>;

/// Answers one request inside the batch's transaction.
///
/// An `Err` means the transaction must be abandoned (the map is full, or LMDB failed);
/// every other outcome, error answers included, is an `Ok(Reply)`.
pub fn handle(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Result<Reply, store::Error> {
    let result = match route(req) {
        Ok(route) => dispatch(route, req, txn, ctx),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(reply) => Ok(reply),
        Err(Failure::Api(e)) => Ok(e.into_reply()),
        Err(Failure::Store(e)) => Err(e),
    }
}

#[derive(Debug, PartialEq)]
enum Route<'a> {
    Health,
    Metrics,
    Heartbeat,
    Enroll,
    Nodes,
    Node(&'a str),
    Events,
    Alerts,
}

fn route(req: &Request) -> Result<Route<'_>, ApiError> {
    let path = req.path.trim_end_matches('/');
    let (route, allow) = match path {
        "/healthz" => (Route::Health, "GET, HEAD"),
        "/metrics" => (Route::Metrics, "GET, HEAD"),
        "/api/agent/heartbeat" | "/agent/heartbeat" => (Route::Heartbeat, "POST"),
        "/api/agents/enroll" => (Route::Enroll, "POST"),
        "/api/nodes" => (Route::Nodes, "GET, HEAD"),
        "/api/events" => (Route::Events, "GET, HEAD"),
        "/api/alerts" => (Route::Alerts, "GET, HEAD"),
        _ => match path.strip_prefix("/api/nodes/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (Route::Node(id), "GET, HEAD"),
            _ => return Err(ApiError::new(404, "not_found", format!("there is nothing at {}", req.path))),
        },
    };
    let allowed = match req.method {
        Method::Get | Method::Head => allow.starts_with("GET"),
        Method::Post => allow == "POST",
        _ => false,
    };
    if !allowed {
        let message = format!("{} accepts only {allow}", req.path);
        return Err(ApiError { allow: Some(allow), ..ApiError::new(405, "method_not_allowed", message) });
    }
    if req.method == Method::Post {
        let is_json = req
            .content_type
            .as_deref()
            .is_none_or(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            let message = "send the body as JSON with Content-Type: application/json";
            return Err(ApiError::new(415, "unsupported_media_type", message));
        }
    }
    Ok(route)
}

fn dispatch(route: Route, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    match route {
        Route::Health => Ok(Reply::json(200, &Health { status: "ok", nodes: txn.node_count()? })),
        Route::Metrics => {
            if !req.local {
                require_api_key(req, txn)?;
            }
            let nodes = txn.nodes()?;
            let snapshot = metrics::Snapshot {
                metrics: ctx.metrics,
                alerts: ctx.alert_stats,
                alerts_pending: txn.outbox()?.len() as u64,
                nodes: &nodes,
                now_ms: ctx.now_ms,
                policy: ctx.policy,
            };
            let body = metrics::render(&snapshot);
            Ok(Reply { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body, allow: None })
        }
        Route::Heartbeat => heartbeat(req, txn, ctx),
        Route::Enroll => enroll(req, txn, ctx),
        Route::Nodes => {
            require_api_key(req, txn)?;
            let nodes = txn.nodes()?.iter().map(|n| n.view(ctx.now_ms, ctx.policy.grace_ms(n))).collect();
            Ok(Reply::json(200, &NodeList { nodes }))
        }
        Route::Events => {
            require_api_key(req, txn)?;
            let node = query_param(&req.query, "node").map(|n| n.to_ascii_lowercase());
            let since = match query_param(&req.query, "since") {
                None => i64::MIN,
                Some(text) => hearth_wire::parse_rfc3339(&text).ok_or_else(|| {
                    ApiError::new(
                        400,
                        "invalid_query",
                        format!("since={text} is not an RFC 3339 time, such as 2026-11-22T10:00:00Z"),
                    )
                })?,
            };
            let limit = limit_param(&req.query)?;
            let events = txn.events(node.as_deref(), since, limit)?.iter().map(EventView::from).collect();
            Ok(Reply::json(200, &EventList { events }))
        }
        Route::Alerts => {
            require_api_key(req, txn)?;
            let alerts = txn.alerts(limit_param(&req.query)?)?.iter().map(AlertView::from).collect();
            Ok(Reply::json(200, &AlertList { alerts }))
        }
        Route::Node(id) => {
            require_api_key(req, txn)?;
            match txn.node(&id.to_ascii_lowercase())? {
                Some(node) => Ok(Reply::json(200, &node.view(ctx.now_ms, ctx.policy.grace_ms(&node)))),
                None => Err(ApiError::new(404, "not_found", format!("no node has the id {id}")).into()),
            }
        }
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    nodes: u64,
}

#[derive(Serialize)]
struct NodeList {
    nodes: Vec<NodeView>,
}

#[derive(Serialize)]
struct EventList {
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct EventView {
    id: u64,
    node_id: String,
    at: String,
    kind: String,
    check: Option<String>,
    detail: String,
}

impl From<&EventRecord> for EventView {
    fn from(e: &EventRecord) -> EventView {
        let (id, node_id, at) = (e.id, e.node_id.clone(), hearth_wire::format_rfc3339(e.at));
        EventView { id, node_id, at, kind: e.kind.clone(), check: e.check.clone(), detail: e.detail.clone() }
    }
}

#[derive(Serialize)]
struct AlertList {
    alerts: Vec<AlertView>,
}

#[derive(Serialize)]
struct AlertView {
    id: u64,
    kind: String,
    node_id: String,
    name: String,
    check: Option<String>,
    detail: String,
    at: String,
    deliveries: Vec<DeliveryView>,
}

#[derive(Serialize)]
struct DeliveryView {
    channel: String,
    state: String,
    attempts: u64,
    last_error: Option<String>,
    delivered_at: Option<String>,
    next_attempt: Option<String>,
}

impl From<&AlertRecord> for AlertView {
    fn from(a: &AlertRecord) -> AlertView {
        let deliveries = a
            .deliveries
            .iter()
            .map(|d| DeliveryView {
                channel: d.channel.clone(),
                state: d.state.clone(),
                attempts: d.attempts,
                last_error: d.last_error.clone(),
                delivered_at: d.delivered_at.map(hearth_wire::format_rfc3339),
                next_attempt: (d.state == "pending").then(|| hearth_wire::format_rfc3339(d.next_attempt)),
            })
            .collect();
        AlertView {
            id: a.id,
            kind: a.kind.clone(),
            node_id: a.node_id.clone(),
            name: a.name.clone(),
            check: a.check.clone(),
            detail: a.detail.clone(),
            at: hearth_wire::format_rfc3339(a.at),
            deliveries,
        }
    }
}

/// The value of `name` in a query string (no percent-decoding: ids and times need none
/// but `+`, which stands for itself in an RFC 3339 offset here).
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.replace("%3A", ":").replace("%2B", "+"))
}

/// `limit=N`, 1 to 1000, default 100.
fn limit_param(query: &str) -> Result<usize, ApiError> {
    match query_param(query, "limit") {
        None => Ok(100),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => {
                Err(ApiError::new(400, "invalid_query", format!("limit={text} must be a whole number from 1 to 1000")))
            }
        },
    }
}

const HOW_TO_ENROL: &str = "enrol this node first: mint a token with `hearth-collector token create` \
     and run `hearth-agent enroll --token TOKEN` on the node";

fn heartbeat(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    // Authenticate before looking at the body, so strangers learn nothing from validation errors.
    let token_node = match &req.bearer {
        Some(token) => match txn.agent_token_node(&secret::hash(token))? {
            Some(node_id) => Some(node_id),
            None => {
                let message =
                    format!("the agent token is not valid (revoked, or from another collector); {HOW_TO_ENROL}");
                return Err(ApiError::unauthorized(message).into());
            }
        },
        None if ctx.allow_anonymous => None,
        None => return Err(ApiError::unauthorized(format!("heartbeats need an agent token; {HOW_TO_ENROL}")).into()),
    };
    let hb = Heartbeat::from_json(&req.body)?;
    let existing = txn.node(&hb.node_id)?;
    match (&token_node, &existing) {
        (Some(owner), _) if *owner != hb.node_id => {
            let message = format!("this agent token belongs to node {owner}, not {}", hb.node_id);
            return Err(ApiError::forbidden(message).into());
        }
        (None, Some(node)) if node.token_hash.is_some() => {
            let message = format!("node {} is enrolled, so its heartbeats must carry its agent token", hb.node_id);
            return Err(ApiError::unauthorized(message).into());
        }
        _ => {}
    }
    let mut node = existing.unwrap_or_else(|| {
        log::info!("node {} ({}) registered by its first anonymous heartbeat", hb.node_id, hb.hostname);
        NodeRecord {
            node_id: hb.node_id.clone(),
            name: hb.hostname.clone(),
            enrolled_at: ctx.now_ms,
            ..NodeRecord::default()
        }
    });
    let ack = HeartbeatAck { status: "ok".into(), node_id: hb.node_id.clone(), device_id: hb.node_id.clone() };
    let previous = node.deadline;
    let changes = liveness::on_heartbeat(&mut node, hb, ctx.now_ms, ctx.policy);
    alerts::record(txn, &node, &changes, ctx.now_ms, ctx.channels)?;
    txn.save_node(&node, previous)?;
    Ok(Reply::json(200, &ack))
}

fn enroll(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let body = EnrollRequest::from_json(&req.body)?;
    let token_hash = secret::hash(&body.token);
    let from = req.client.map_or_else(|| "a Unix socket".to_owned(), |ip| ip.to_string());
    let refuse = |error: ApiError| -> Handled {
        log::warn!("enrolment of {} from {from} refused: {}", body.hostname, error.code);
        Err(error.into())
    };
    let Some(mut token) = txn.enroll_token(&token_hash)? else {
        let message = "the enrolment token is not recognised; mint one with `hearth-collector token create`";
        return refuse(ApiError::unauthorized(message));
    };
    if let Some(by) = &token.used_by {
        let message = format!("this enrolment token was already used (by node {by}); mint a fresh one");
        return refuse(ApiError::new(410, "token_used", message));
    }
    if token.expires_at <= ctx.now_ms {
        let message = "this enrolment token has expired; mint a fresh one";
        return refuse(ApiError::new(410, "token_expired", message));
    }
    let node_id = match (&token.node_id, &body.node_id) {
        (Some(bound), _) => bound.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => secret::new_node_id().map_err(internal)?,
    };
    let existing = txn.node(&node_id)?;
    if existing.as_ref().is_some_and(|n| n.token_hash.is_some()) && token.node_id.is_none() {
        let message = format!(
            "node {node_id} is already enrolled; to enrol it again, mint a token bound to it \
             (`hearth-collector token create --node {node_id}`), or enrol without a node id"
        );
        return Err(ApiError::new(409, "node_exists", message).into());
    }
    let agent_token = secret::new_secret(AGENT_PREFIX).map_err(internal)?;
    let agent_hash = secret::hash(&agent_token);
    let mut node = existing.unwrap_or_default();
    if let Some(old) = node.token_hash.as_deref().and_then(unhex32) {
        txn.delete_agent_token(&old)?;
    }
    let mut tags = token.tags.clone();
    tags.extend(body.tags.iter().flatten().filter(|t| !token.tags.contains(t)).cloned());
    node = NodeRecord {
        node_id: node_id.clone(),
        name: body.name.or(token.name.clone()).unwrap_or_else(|| body.hostname.clone()),
        hostname: body.hostname,
        tags,
        enrolled_at: ctx.now_ms,
        token_hash: Some(secret::hex(&agent_hash)),
        enrolled_with: EnrolledFacts {
            os: body.os,
            arch: body.arch,
            agent_version: body.agent_version,
            cpu_cores: body.cpu_cores,
            memory_mb: body.memory_mb,
            disk_gb: body.disk_gb,
        },
        ..node
    };
    txn.put_agent_token(&agent_hash, &node_id)?;
    txn.put_node(&node)?;
    token.used_at = Some(ctx.now_ms);
    token.used_by = Some(node_id.clone());
    txn.put_enroll_token(&token_hash, &token)?;
    log::info!("node {node_id} ({}) enrolled from {from} with token {}", node.hostname, token.id);
    Ok(Reply::json(200, &EnrollResponse { host_id: node_id.clone(), node_id, agent_token }))
}

fn require_api_key(req: &Request, txn: &Txn<RwTxn>) -> Result<(), Failure> {
    let Some(key) = &req.bearer else {
        let message =
            "this needs an API key: send `Authorization: Bearer hk_…` (mint one with `hearth-collector apikey create`)";
        return Err(ApiError::unauthorized(message).into());
    };
    if key.starts_with(API_KEY_PREFIX) && txn.api_key(&secret::hash(key))?.is_some() {
        return Ok(());
    }
    if key.starts_with(AGENT_PREFIX) && txn.agent_token_node(&secret::hash(key))?.is_some() {
        return Err(ApiError::forbidden("an agent token may only send heartbeats; use an API key").into());
    }
    Err(ApiError::unauthorized("the API key is not valid; mint one with `hearth-collector apikey create`").into())
}

fn internal(e: getrandom::Error) -> Failure {
    log::error!("cannot get random bytes: {e}");
    ApiError::new(500, "internal", "the collector could not generate a secret; try again").into()
}

fn unhex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, content_type: Option<&str>) -> Request {
        Request {
            method,
            path: path.into(),
            query: String::new(),
            bearer: None,
            content_type: content_type.map(Into::into),
            body: String::new(),
            local: false,
            client: None,
        }
    }

    #[test]
    fn routing() {
        type Case<'a> = (Method, &'a str, Option<&'a str>, Result<Route<'a>, u16>);
        let cases: &[Case] = &[
            (Method::Get, "/healthz", None, Ok(Route::Health)),
            (Method::Head, "/healthz", None, Ok(Route::Health)),
            (Method::Post, "/api/agent/heartbeat", Some("application/json"), Ok(Route::Heartbeat)),
            (Method::Post, "/agent/heartbeat", Some("application/json; charset=utf-8"), Ok(Route::Heartbeat)),
            (Method::Post, "/agent/heartbeat", None, Ok(Route::Heartbeat)),
            (Method::Post, "/agent/heartbeat", Some("text/plain"), Err(415)),
            (Method::Get, "/agent/heartbeat", None, Err(405)),
            (Method::Post, "/api/agents/enroll", Some("application/json"), Ok(Route::Enroll)),
            (Method::Get, "/api/nodes/", None, Ok(Route::Nodes)),
            (Method::Get, "/api/nodes/abc", None, Ok(Route::Node("abc"))),
            (Method::Delete, "/api/nodes/abc", None, Err(405)),
            (Method::Get, "/api/nodes/abc/x", None, Err(404)),
            (Method::Get, "/nope", None, Err(404)),
            (Method::Other, "/healthz", None, Err(405)),
        ];
        for (method, path, ct, expected) in cases {
            let request = req(*method, path, *ct);
            let got = route(&request).map_err(|e| e.status);
            assert_eq!(&got, expected, "{method:?} {path} {ct:?}");
        }
    }

    #[test]
    fn errors_are_json_with_code_and_sentence() {
        let reply = ApiError::body_too_large().into_reply();
        assert_eq!(reply.status, 413);
        let body: ErrorBody = json::from_str(&reply.body).unwrap();
        assert_eq!(body.code, "body_too_large");
        assert!(body.error.contains("65536"));
    }

    #[test]
    fn store_failures_become_507_or_500() {
        let full = ApiError::storage(&store::Error::Full);
        assert_eq!((full.status, full.code), (507, "storage_full"));
        let broken = ApiError::storage(&store::Error::Lmdb(heed::Error::Mdb(heed::MdbError::Panic)));
        assert_eq!((broken.status, broken.code), (500, "internal"));
        // A damaged record fails only the request that read it, not the whole batch.
        match Failure::from(store::Error::Corrupt("x".into())) {
            Failure::Api(e) => assert_eq!(e.status, 500),
            Failure::Store(_) => panic!("a damaged record must not abort the batch"),
        }
        assert!(matches!(Failure::from(store::Error::Full), Failure::Store(_)));
    }

    #[test]
    fn unhex_round_trips() {
        let h = secret::hash("x");
        assert_eq!(unhex32(&secret::hex(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
    }
}
