//! The HTTP API as plain functions: a parsed request and a transaction in, a reply out.
//! No sockets here; `http` moves bytes, this module decides what they mean.
//!
//! `route` names what was asked for; `dispatch` checks who is asking (`require`) and hands
//! the request to its handler: `agents` (enrolment, heartbeats), `beacon` (Beacon's
//! heartbeats, with a fleet key), `fleet` (nodes, tokens, events, alerts, audit),
//! `fleetkeys` (one key, many nodes), `jobs` (scheduled jobs), `pings` (their
//! Healthchecks-style ping routes), `session` (login), `web` (the dashboard, install script,
//! binaries), and for other systems' clients: `wrenn` (Wrenn's `/v1/hosts`), `restic`
//! (restic-manager's health poll).

mod agents;
mod beacon;
mod fleet;
mod fleetkeys;
mod holds;
mod jobs;
mod pings;
mod restic;
mod session;
pub(crate) mod status;
mod uptime;
mod web;
mod wrenn;

pub use fleetkeys::{KeyView, DEFAULT_MAX_USES, DEFAULT_TTL_SECS, MAX_TTL_SECS, MAX_USES};
pub(crate) use jobs::{create as create_job, new_ping_key};

/// A job as `GET /api/jobs` shows it to a viewer (no ping URL, no recent pings), for `job list --json`.
pub(crate) fn job_view(job: &crate::model::JobRecord, now: i64) -> impl Serialize {
    jobs::view(job, &[], now, None)
}
pub(crate) use holds::{SilenceView, WindowView};
pub use session::{LoginLimiter, LoginOutcome};

use crate::alerts::{config::Channels, worker::Stats};
use crate::limits::RateLimits;
use crate::liveness::Policy;
use crate::maintenance::HoldKind;
use crate::metrics::{self, Metrics};
use crate::model::{AuditRecord, NodeRecord, Role};
use crate::secret::{self, AGENT_PREFIX, API_KEY_PREFIX, FLEET_PREFIX};
use crate::store::{self, ReadTxn, RwTxn, Txn};
use hearth_wire::{fields::Fields, paths, BeaconHeartbeat, ErrorBody, Heartbeat, WireError};
use miniserde::{json, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// The largest request body the collector reads, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// The largest ping body (a run's log), as Healthchecks takes: 100 KB.
pub const MAX_PING_BODY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

/// A request, read off the wire and not yet interpreted.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
    /// What followed `?` in the URL, if anything.
    pub query: String,
    /// The credential from `Authorization: Bearer …`, `X-Host-Token: …` or `X-API-Key: …`.
    pub bearer: Option<String>,
    /// The `hearth_session` cookie.
    pub session: Option<String>,
    pub content_type: Option<String>,
    /// The `Host` header, for the install command's URL.
    pub host: Option<String>,
    /// Whether the client reached us over HTTPS (a trusted proxy said so).
    pub https: bool,
    /// Whether `X-Forwarded-Proto: https` came, trusted or not: enough to mark a cookie
    /// `Secure` or to prefer https in an install command, never to trust the client.
    pub forwarded_https: bool,
    /// Whether a proxy forwarded it (`X-Forwarded-For`, `CF-Connecting-IP`, `X-Real-IP`,
    /// `Forwarded`, `X-Forwarded-Proto`).
    pub forwarded: bool,
    /// Whether `client` is the address a trusted proxy named, rather than the peer's.
    pub trusted_client: bool,
    pub body: String,
    /// From loopback, and not forwarded by a proxy (`forwarded`).
    pub local: bool,
    /// This request's place in the order the server took requests (from 1), so that
    /// work run again after the store's map grew counts it once (`limits.rs`); 0 if unknown.
    pub seq: u64,
    /// Who sent it: the peer's address, or with `--trust-proxy cloudflare` the one
    /// `CF-Connecting-IP` names. `None` over a Unix socket with no trusted proxy header.
    pub client: Option<std::net::IpAddr>,
    /// A heartbeat's body, parsed by [`prepare`] before the request reached the request thread.
    pub beat: Ahead<Beat>,
}

/// Work done on a request ahead of its handler, off the request thread; the handler
/// takes it once, and a batch run again (after the map grew) does the work itself.
pub struct Ahead<T>(std::sync::Mutex<Option<T>>);

impl<T> Ahead<T> {
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl<T> Default for Ahead<T> {
    fn default() -> Self {
        Ahead(std::sync::Mutex::new(None))
    }
}

/// A copy has nothing done ahead: its handler does the work.
impl<T> Clone for Ahead<T> {
    fn clone(&self) -> Self {
        Ahead::default()
    }
}

impl<T> std::fmt::Debug for Ahead<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ahead")
    }
}

/// A heartbeat's body, parsed: Beacon's (`device_name` and no `node_id`, or any body
/// without `node_id` sent with a fleet key) or Hearth's own.
pub enum Beat {
    Hearth(Box<Result<Heartbeat, WireError>>),
    Beacon(Box<Result<BeaconHeartbeat, WireError>>),
}

impl Beat {
    /// Parses the body once, and reads it as whichever heartbeat it is. A body sent with a
    /// fleet key is Beacon's unless it names a `node_id`, so that a Beacon whose body is
    /// broken, or lacks `device_name`, hears that (400, once its key is checked) rather than
    /// that its key is wrong.
    fn parse(body: &str, bearer: Option<&str>) -> Beat {
        let fleet_key = bearer.is_some_and(|b| b.starts_with(FLEET_PREFIX));
        // `"node_id": null` or `""` names no node.
        let names_node = |f: &Fields| match f.opt_str("node_id", 64) {
            Ok(None) => false,
            Ok(Some(id)) => !id.trim().is_empty(),
            Err(_) => true,
        };
        match Fields::parse(body) {
            Ok(f) if BeaconHeartbeat::is_beacon_fields(&f) || (fleet_key && !names_node(&f)) => {
                Beat::Beacon(Box::new(BeaconHeartbeat::from_fields(&f)))
            }
            Ok(f) => Beat::Hearth(Box::new(Heartbeat::from_fields(&f))),
            Err(e) if fleet_key => Beat::Beacon(Box::new(Err(e))),
            Err(e) => Beat::Hearth(Box::new(Err(e))),
        }
    }
}

/// What can be done with a request before the request thread sees it, on its connection's
/// own thread: parsing a heartbeat (the costliest part of taking one). Nothing here looks
/// at the store, and a bad body is answered only after the handler has authenticated the
/// sender.
pub fn prepare(mut req: Request) -> Request {
    if matches!(route(&req), Ok(Route::Heartbeat)) {
        req.beat = Ahead(std::sync::Mutex::new(Some(Beat::parse(&req.body, req.bearer.as_deref()))));
    }
    req
}

impl Request {
    /// The client's address for logs and the audit log.
    pub fn client_text(&self) -> String {
        self.client.map_or_else(|| "a Unix socket".to_owned(), |ip| ip.to_string())
    }

    fn is_json(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
    }
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Further headers: `Allow`, `Set-Cookie`, `Retry-After`, `Content-Security-Policy`…
    pub headers: Vec<(&'static str, String)>,
    /// A body made a piece at a time instead of `body`, for answers too large to hold
    /// whole (`/metrics/nodes`); it ends when the connection closes.
    pub pieces: Option<Pieces>,
}

/// A streamed body: the pieces in turn.
pub type PieceIter = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// The pieces of a streamed body, taken once by whoever writes the answer; `held` is
/// about how many bytes the iterator keeps while it runs, for the writers' memory budget.
#[derive(Clone)]
pub struct Pieces {
    iter: std::sync::Arc<Mutex<Option<PieceIter>>>,
    pub held: usize,
}

impl Pieces {
    pub fn new(pieces: impl Iterator<Item = Vec<u8>> + Send + 'static, held: usize) -> Pieces {
        Pieces { iter: std::sync::Arc::new(Mutex::new(Some(Box::new(pieces)))), held }
    }

    /// The pieces; `None` if they were taken already.
    pub fn take(&self) -> Option<PieceIter> {
        self.iter.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl std::fmt::Debug for Pieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pieces(…)")
    }
}

impl PartialEq for Pieces {
    fn eq(&self, other: &Pieces) -> bool {
        std::sync::Arc::ptr_eq(&self.iter, &other.iter)
    }
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        Reply::bytes(status, "application/json", json::to_string(value).into_bytes())
    }

    fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply { status, content_type, body, headers: Vec::new(), pieces: None }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// The settings and the moment a batch of requests is handled with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Unix milliseconds by the collector's clock.
    pub now_ms: i64,
    /// Every write stamped before this (Unix milliseconds) is in the snapshot a read sees;
    /// writes stamped later may not be (one was under way as it opened). `now_ms` for writes.
    pub settled_ms: i64,
    pub allow_anonymous: bool,
    pub policy: &'a Policy,
    /// When this collector started watching (`liveness::Watching`): a node's status counts
    /// its silence from then at the earliest (`status_grace_ms`).
    pub watching_since: i64,
    pub channels: &'a Channels,
    pub metrics: &'a std::sync::Mutex<Metrics>,
    pub alert_stats: &'a Stats,
    /// Failed logins, per user and per client address.
    pub logins: &'a Mutex<LoginLimiter>,
    /// How fast clients may make the collector store things (`limits.rs`).
    pub limits: &'a RateLimits,
    /// Where agent binaries are served from (`--agent-dir`).
    pub agent_dir: Option<&'a Path>,
    /// The collector's address as agents reach it (`--public-url`), for install commands.
    pub public_url: Option<&'a str>,
    /// The certificate pin enrolment answers carry (`--cert-pin`), if any.
    pub cert_pin: Option<&'a str>,
    /// Public status pages as last rendered (`api/status.rs`).
    pub status_pages: &'a status::Cache,
}

/// An error answer: status, stable code, and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Context<'_> {
    /// How long `node` may be silent before its status reads offline (`Policy::status_grace_ms`).
    pub fn status_grace_ms(&self, node: &NodeRecord) -> u64 {
        self.policy.status_grace_ms(node, self.watching_since)
    }
}

impl ApiError {
    /// A 401 says how to authenticate (`WWW-Authenticate`, as HTTP requires): with a
    /// bearer token; a browser shows no password prompt for that scheme.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        let headers =
            if status == 401 { vec![("WWW-Authenticate", r#"Bearer realm="hearth""#.to_owned())] } else { Vec::new() };
        ApiError { status, code, message: message.into(), headers }
    }

    /// The answer to a request whose handling panicked: a bug, which the log describes.
    pub fn bug() -> ApiError {
        ApiError::new(
            500,
            "internal",
            "the collector failed on this request (a bug; its log says where); nothing was saved",
        )
    }

    pub fn body_too_large_than(limit: usize) -> ApiError {
        ApiError::new(413, "body_too_large", format!("the request body is larger than {limit} bytes"))
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

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }

    /// The answer for a request to `path`: in Wrenn's shape on its `/v1` routes, else Hearth's.
    pub fn into_reply_for(self, path: &str) -> Reply {
        if wrenn::is_v1_path(path) {
            wrenn::error_reply(self)
        } else {
            self.into_reply()
        }
    }

    pub fn into_reply(self) -> Reply {
        let body = ErrorBody { code: self.code.to_owned(), message: Some(self.message.clone()), error: self.message };
        Reply { headers: self.headers, ..Reply::json(self.status, &body) }
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

/// What a request needs, which decides the thread that serves it (see `http.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Reads only: served beside the request thread, on a read-only snapshot. Refusals
    /// that need no store (unknown path, wrong method) are reads too.
    Read,
    /// Changes the store: done by the request thread, in a batch's write transaction.
    Write,
    /// A login: the password is checked off the request thread (`session::verify`), and
    /// only the session it opens is written in a batch (`finish_login`).
    Login,
}

/// Which kind of work `req` is. Cheap: it only looks at the method and path.
pub fn work(req: &Request) -> Work {
    match route(req) {
        Ok(Route::Login) => Work::Login,
        Ok(Route::Heartbeat | Route::Enroll | Route::Logout | Route::TokenMint) => Work::Write,
        Ok(Route::FleetKeyMint | Route::FleetKeyRevoke(_)) => Work::Write,
        Ok(Route::NodeEdit(_) | Route::NodeDelete(_) | Route::NodeToken(_) | Route::TokenRevoke(_)) => Work::Write,
        Ok(
            Route::HostCreate
            | Route::HostRegister
            | Route::HostBeat(_)
            | Route::HostDelete(_)
            | Route::HostToken(_)
            | Route::HostTagAdd(_)
            | Route::HostTagRemove(..),
        ) => Work::Write,
        // A ping is a write: it goes through the batch like a heartbeat, in arrival order.
        Ok(Route::Ping(_) | Route::JobAdd | Route::JobEdit(_) | Route::JobRemove(_) | Route::PingKeyRotate) => {
            Work::Write
        }
        Ok(
            Route::NodeAck(_) | Route::WindowAdd | Route::WindowRemove(_) | Route::SilenceAdd | Route::SilenceRemove(_),
        ) => Work::Write,
        Ok(Route::PageCreate | Route::PageRemove(_)) => Work::Write,
        Ok(_) | Err(_) => Work::Read,
    }
}

/// Whether `req` is an agent's heartbeat, for the heartbeat counters.
pub fn is_heartbeat(req: &Request) -> bool {
    matches!(route(req), Ok(Route::Heartbeat | Route::HostBeat(_)))
}

/// Answers one request inside the batch's transaction. Reads and logins are answered
/// here too (the fuzzing harness and the tests send everything this way); the server
/// sends them elsewhere ([`work`]).
///
/// An `Err` means the transaction must be abandoned (the map is full, or LMDB failed);
/// every other outcome, error answers included, is an `Ok(Reply)`.
pub fn handle(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Result<Reply, store::Error> {
    // For the server's test that a request which panics costs only its own answer.
    #[cfg(test)]
    if req.path == "/test/panic" {
        panic!("a test's deliberate panic");
    }
    let result = match route(req) {
        Ok(Route::Login) => {
            let outcome = session::verify(req, txn, ctx);
            session::finish(outcome, req, txn, ctx)
        }
        Ok(route) if work(req) == Work::Write => dispatch_write(route, req, txn, ctx),
        Ok(route) => dispatch_read(route, req, txn, ctx),
        Err(e) => Err(e.into()),
    };
    settle(req, result)
}

/// Answers a request that only reads ([`Work::Read`]), on any snapshot.
pub fn handle_read<T: ReadTxn>(req: &Request, txn: &Txn<T>, ctx: &Context) -> Result<Reply, store::Error> {
    settle(req, route(req).map_err(Failure::from).and_then(|route| dispatch_read(route, req, txn, ctx)))
}

/// Writes what a checked login leads to (a session, or a failure in the audit log).
pub fn finish_login(
    outcome: LoginOutcome,
    req: &Request,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Result<Reply, store::Error> {
    settle(req, session::finish(outcome, req, txn, ctx))
}

/// Checks a login's password, off the request thread: slow on purpose (argon2id).
pub fn verify_login<T: ReadTxn>(req: &Request, txn: &Txn<T>, ctx: &Context) -> LoginOutcome {
    session::verify(req, txn, ctx)
}

/// Turns a handler's outcome into the answer; errors take the shape the route's clients
/// read (Wrenn's on `/v1`, Hearth's everywhere else).
fn settle(req: &Request, result: Handled) -> Result<Reply, store::Error> {
    match result {
        Ok(reply) => Ok(reply),
        Err(Failure::Api(e)) => Ok(e.into_reply_for(&req.path)),
        Err(Failure::Store(e)) => Err(e),
    }
}

#[derive(Debug, PartialEq)]
enum Route<'a> {
    Asset(&'a str),
    InstallScript,
    AgentBinary,
    AgentChecksum,
    Health,
    /// `/metrics`, or with `true` `/metrics/nodes`.
    Metrics(bool),
    Heartbeat,
    Enroll,
    Login,
    Logout,
    Me,
    Nodes,
    Node(&'a str),
    NodeUptime(&'a str),
    NodeAck(&'a str),
    Collector,
    StatusPage(&'a str),
    StatusCss,
    Pages,
    PageCreate,
    PageRemove(&'a str),
    Windows,
    WindowAdd,
    WindowRemove(&'a str),
    Silences,
    SilenceAdd,
    SilenceRemove(&'a str),
    NodeEdit(&'a str),
    NodeDelete(&'a str),
    NodeToken(&'a str),
    Events,
    Alerts,
    Audit,
    Tokens,
    TokenMint,
    TokenRevoke(&'a str),
    FleetKeys,
    FleetKeyMint,
    FleetKeyRevoke(&'a str),
    /// restic-manager's health poll, `GET /api/hosts`.
    ResticHosts,
    /// Wrenn's `/v1/hosts` routes.
    HostList,
    HostCreate,
    HostRegister,
    Host(&'a str),
    HostDelete(&'a str),
    HostToken(&'a str),
    HostBeat(&'a str),
    HostTags(&'a str),
    HostTagAdd(&'a str),
    HostTagRemove(&'a str, &'a str),
    /// `/ping/…`: what follows `/ping/`.
    Ping(&'a str),
    Jobs,
    JobAdd,
    Job(&'a str),
    JobEdit(&'a str),
    JobRemove(&'a str),
    /// A kept ping's log: job id and ping number.
    JobPing(&'a str, &'a str),
    PingKeyRotate,
}

fn route(req: &Request) -> Result<Route<'_>, ApiError> {
    use Method::{Delete, Get, Head, Post, Put};
    const READ: &str = "GET, HEAD";
    let path = match req.path.trim_end_matches('/') {
        "" => "/",
        path => path,
    };
    let (m, read) = (req.method, matches!(req.method, Get | Head));
    let only = |method: Method, route: Route<'static>| (m == method).then_some(route);
    let not_found = || ApiError::not_found(format!("there is nothing at {}", req.path));
    let (found, allow): (Option<Route>, &'static str) = match path {
        "/" | "/index.html" | "/app.js" | "/style.css" => (read.then_some(Route::Asset(path)), READ),
        "/install.sh" | "/install/install.sh" => (read.then_some(Route::InstallScript), READ),
        "/agent/binary" => (read.then_some(Route::AgentBinary), READ),
        "/agent/binary.sha256" => (read.then_some(Route::AgentChecksum), READ),
        "/healthz" => (read.then_some(Route::Health), READ),
        "/metrics" => (read.then_some(Route::Metrics(false)), READ),
        "/metrics/nodes" => (read.then_some(Route::Metrics(true)), READ),
        paths::HEARTBEAT | paths::HEARTBEAT_SHORT => (only(Post, Route::Heartbeat), "POST"),
        paths::ENROLL => (only(Post, Route::Enroll), "POST"),
        "/api/auth/login" => (only(Post, Route::Login), "POST"),
        "/api/auth/logout" => (only(Post, Route::Logout), "POST"),
        "/api/auth/me" => (read.then_some(Route::Me), READ),
        "/api/nodes" => (read.then_some(Route::Nodes), READ),
        "/api/events" => (read.then_some(Route::Events), READ),
        "/api/alerts" => (read.then_some(Route::Alerts), READ),
        "/api/audit" => (read.then_some(Route::Audit), READ),
        "/api/hosts" => (read.then_some(Route::ResticHosts), READ),
        "/v1/hosts" => (if read { Some(Route::HostList) } else { only(Post, Route::HostCreate) }, "GET, HEAD, POST"),
        "/v1/hosts/register" => (only(Post, Route::HostRegister), "POST"),
        "/status.css" => (read.then_some(Route::StatusCss), READ),
        "/api/collector" => (read.then_some(Route::Collector), READ),
        "/api/status-pages" => {
            (if read { Some(Route::Pages) } else { only(Post, Route::PageCreate) }, "GET, HEAD, POST")
        }
        "/api/maintenance" => {
            (if read { Some(Route::Windows) } else { only(Post, Route::WindowAdd) }, "GET, HEAD, POST")
        }
        "/api/silences" => {
            (if read { Some(Route::Silences) } else { only(Post, Route::SilenceAdd) }, "GET, HEAD, POST")
        }
        "/api/enrollment-tokens" => {
            (if read { Some(Route::Tokens) } else { only(Post, Route::TokenMint) }, "GET, HEAD, POST")
        }
        "/api/fleet-keys" => {
            (if read { Some(Route::FleetKeys) } else { only(Post, Route::FleetKeyMint) }, "GET, HEAD, POST")
        }
        "/api/jobs" => (if read { Some(Route::Jobs) } else { only(Post, Route::JobAdd) }, "GET, HEAD, POST"),
        "/api/jobs/ping-key" => (only(Post, Route::PingKeyRotate), "POST"),
        _ => {
            if let Some(rest) = path.strip_prefix("/ping/") {
                (matches!(m, Get | Head | Post).then_some(Route::Ping(rest)), "GET, HEAD, POST")
            } else if let Some(rest) = path.strip_prefix("/api/jobs/") {
                match rest.split('/').collect::<Vec<_>>()[..] {
                    [id] => {
                        let found = match m {
                            Get | Head => Some(Route::Job(id)),
                            Put => Some(Route::JobEdit(id)),
                            Delete => Some(Route::JobRemove(id)),
                            _ => None,
                        };
                        (found, "GET, HEAD, PUT, DELETE")
                    }
                    [id, "pings", n] if !id.is_empty() => (read.then_some(Route::JobPing(id, n)), READ),
                    _ => return Err(not_found()),
                }
            } else if let Some(rest) = path.strip_prefix("/api/nodes/") {
                match rest.split_once('/') {
                    None => {
                        let found = match m {
                            Get | Head => Some(Route::Node(rest)),
                            Put => Some(Route::NodeEdit(rest)),
                            Delete => Some(Route::NodeDelete(rest)),
                            _ => None,
                        };
                        (found, "GET, HEAD, PUT, DELETE")
                    }
                    Some((id, "token")) if !id.is_empty() => ((m == Post).then_some(Route::NodeToken(id)), "POST"),
                    Some((id, "uptime")) if !id.is_empty() => (read.then_some(Route::NodeUptime(id)), READ),
                    Some((id, "ack")) if !id.is_empty() => ((m == Post).then_some(Route::NodeAck(id)), "POST"),
                    _ => return Err(not_found()),
                }
            } else if let Some(rest) = path.strip_prefix("/v1/hosts/") {
                let mut parts = rest.splitn(3, '/');
                match (parts.next().filter(|id| !id.is_empty()), parts.next(), parts.next()) {
                    (Some(id), None, None) => {
                        let found = match m {
                            Get | Head => Some(Route::Host(id)),
                            Delete => Some(Route::HostDelete(id)),
                            _ => None,
                        };
                        (found, "GET, HEAD, DELETE")
                    }
                    (Some(id), Some("token"), None) => ((m == Post).then_some(Route::HostToken(id)), "POST"),
                    (Some(id), Some("heartbeat"), None) => ((m == Post).then_some(Route::HostBeat(id)), "POST"),
                    (Some(id), Some("tags"), None) => {
                        let found = match m {
                            Get | Head => Some(Route::HostTags(id)),
                            Post => Some(Route::HostTagAdd(id)),
                            _ => None,
                        };
                        (found, "GET, HEAD, POST")
                    }
                    (Some(id), Some("tags"), Some(tag)) if !tag.is_empty() && !tag.contains('/') => {
                        ((m == Delete).then_some(Route::HostTagRemove(id, tag)), "DELETE")
                    }
                    _ => return Err(not_found()),
                }
            } else if let Some(slug) = path.strip_prefix("/status/").filter(|s| !s.contains('/')) {
                (read.then_some(Route::StatusPage(slug)), READ)
            } else if let Some(slug) = path.strip_prefix("/api/status-pages/").filter(|s| !s.contains('/')) {
                ((m == Delete).then_some(Route::PageRemove(slug)), "DELETE")
            } else if let Some(id) = path.strip_prefix("/api/maintenance/").filter(|id| !id.contains('/')) {
                ((m == Delete).then_some(Route::WindowRemove(id)), "DELETE")
            } else if let Some(id) = path.strip_prefix("/api/silences/").filter(|id| !id.contains('/')) {
                ((m == Delete).then_some(Route::SilenceRemove(id)), "DELETE")
            } else if let Some(id) = path.strip_prefix("/api/enrollment-tokens/").filter(|id| !id.contains('/')) {
                ((m == Delete).then_some(Route::TokenRevoke(id)), "DELETE")
            } else if let Some(id) = path.strip_prefix("/api/fleet-keys/").filter(|id| !id.contains('/')) {
                ((m == Delete).then_some(Route::FleetKeyRevoke(id)), "DELETE")
            } else {
                return Err(not_found());
            }
        }
    };
    let Some(found) = found else {
        let message = format!("{} accepts only {allow}", req.path);
        let error = ApiError::new(405, "method_not_allowed", message);
        return Err(ApiError { headers: vec![("Allow", allow.to_owned())], ..error });
    };
    // Pings take any body (curl --data-raw sends a form type): it is the run's log.
    let ping = matches!(found, Route::Ping(_));
    if !ping && matches!(m, Post | Put | Delete) && req.content_type.is_some() && !req.is_json() {
        let message = "send the body as JSON with Content-Type: application/json";
        return Err(ApiError::new(415, "unsupported_media_type", message));
    }
    Ok(found)
}

fn dispatch_read<T: ReadTxn>(route: Route, req: &Request, txn: &Txn<T>, ctx: &Context) -> Handled {
    use Role::{Admin, Operator, Viewer};
    match route {
        Route::Asset(path) => web::asset(path),
        Route::InstallScript => Ok(web::install_script()),
        Route::AgentBinary => web::agent_binary(req, ctx, false),
        Route::AgentChecksum => web::agent_binary(req, ctx, true),
        Route::Health => Ok(Reply::json(200, &Health { status: "ok", nodes: txn.node_count()? })),
        Route::Metrics(per_node) => {
            // Prometheus on the same host scrapes without a key; anyone else needs one.
            if !req.local {
                require(Viewer, req, txn, ctx)?;
            }
            const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
            if per_node {
                let mut series = Vec::new();
                let mut failed = None;
                let holds = crate::alerts::Holds::load(txn)?;
                let in_force = holds.in_force(ctx.now_ms);
                txn.each_node(|n| {
                    let one =
                        metrics::NodeSeries::of(&n, ctx.now_ms, ctx.status_grace_ms(&n)).covered(in_force.covers(&n));
                    match uptime::spans(txn, &n, ctx.now_ms, &holds) {
                        Ok(spans) => series.push(one.with_uptime(
                            crate::uptime::Window::ALL.map(|w| uptime::ratio_over(&n, &spans, w, ctx.now_ms)),
                        )),
                        Err(e) => failed = Some(e),
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                let held = series.iter().map(metrics::NodeSeries::size).sum();
                let pieces = Some(Pieces::new(metrics::node_pieces(series), held));
                return Ok(Reply { pieces, ..Reply::bytes(200, PROMETHEUS_TEXT, Vec::new()) });
            }
            let counters = metrics::lock(ctx.metrics).clone();
            let snapshot = metrics::Snapshot {
                metrics: &counters,
                alerts: ctx.alert_stats,
                alerts_pending: txn.outbox()?.len() as u64,
                alerts_dropped: txn.setting(store::setting::ALERTS_DROPPED)?.unwrap_or(0),
            };
            let mut fleet = metrics::Fleet::default();
            // What holds now, so that a node is marked held from the moment a window or
            // silence covers it, not only once something about it was held.
            let held = crate::alerts::Holds::load(txn)?.in_force(ctx.now_ms);
            txn.each_node_status(held.by_tag(), |node| {
                fleet.add(&node, node.status(ctx.now_ms, ctx.status_grace_ms(&node)), held.covers(&node))
            })?;
            let mut text = metrics::render(&snapshot, fleet);
            let mut jobs = metrics::Jobs::default();
            for job in txn.jobs()? {
                jobs.add(&job, crate::jobs::status(&job, ctx.now_ms));
            }
            jobs.render(&mut text);
            Ok(Reply::bytes(200, PROMETHEUS_TEXT, text.into_bytes()))
        }
        Route::Me => session::me(&require(Viewer, req, txn, ctx)?),
        Route::Nodes => {
            require(Viewer, req, txn, ctx)?;
            fleet::nodes(req, txn, ctx)
        }
        Route::Node(id) => {
            require(Viewer, req, txn, ctx)?;
            fleet::node(id, txn, ctx)
        }
        Route::NodeUptime(id) => {
            require(Viewer, req, txn, ctx)?;
            uptime::node_uptime(id, txn, ctx)
        }
        Route::Events => {
            require(Viewer, req, txn, ctx)?;
            fleet::events(req, txn)
        }
        Route::Alerts => {
            require(Viewer, req, txn, ctx)?;
            fleet::alerts(req, txn)
        }
        Route::Audit => {
            require(Admin, req, txn, ctx)?;
            fleet::audit_log(req, txn)
        }
        Route::Tokens => {
            require(Operator, req, txn, ctx)?;
            fleet::tokens(txn, ctx)
        }
        Route::FleetKeys => {
            require(Operator, req, txn, ctx)?;
            fleetkeys::list(txn, ctx)
        }
        Route::ResticHosts => {
            require(Viewer, req, txn, ctx)?;
            restic::hosts(txn, ctx)
        }
        Route::HostList => {
            require(Viewer, req, txn, ctx)?;
            wrenn::list(txn, ctx)
        }
        Route::Host(id) => {
            require(Viewer, req, txn, ctx)?;
            wrenn::get(id, txn, ctx)
        }
        Route::HostTags(id) => {
            require(Viewer, req, txn, ctx)?;
            wrenn::tags(id, txn)
        }
        Route::Jobs => jobs::list(&require(Viewer, req, txn, ctx)?, req, txn, ctx),
        Route::Job(id) => jobs::get(&require(Viewer, req, txn, ctx)?, id, req, txn, ctx),
        Route::JobPing(id, n) => {
            require(Viewer, req, txn, ctx)?;
            jobs::ping_log(id, n, txn)
        }
        // Public by design: what a page shows is chosen in `status.rs`, and nothing else.
        Route::StatusPage(path) => status::page(path, txn, ctx),
        Route::StatusCss => Ok(Reply::bytes(200, "text/css; charset=utf-8", status::STATUS_CSS.as_bytes().to_vec())
            .with_header("X-Content-Type-Options", "nosniff")),
        Route::Collector => {
            require(Viewer, req, txn, ctx)?;
            let about = About {
                version: env!("CARGO_PKG_VERSION"),
                agent_binaries: ctx.agent_dir.is_some_and(std::path::Path::is_dir),
                public_url: ctx.public_url.map(str::to_owned),
            };
            Ok(Reply::json(200, &about))
        }
        Route::Pages => {
            require(Viewer, req, txn, ctx)?;
            status::pages(txn)
        }
        Route::Windows => {
            require(Viewer, req, txn, ctx)?;
            holds::windows(txn, ctx)
        }
        Route::Silences => {
            require(Viewer, req, txn, ctx)?;
            holds::silences(txn, ctx)
        }
        Route::Heartbeat
        | Route::Ping(_)
        | Route::JobAdd
        | Route::JobEdit(_)
        | Route::JobRemove(_)
        | Route::PingKeyRotate
        | Route::Enroll
        | Route::Login
        | Route::Logout
        | Route::NodeEdit(_)
        | Route::NodeDelete(_)
        | Route::NodeToken(_)
        | Route::TokenMint
        | Route::TokenRevoke(_)
        | Route::FleetKeyMint
        | Route::FleetKeyRevoke(_)
        | Route::HostCreate
        | Route::HostRegister
        | Route::HostBeat(_)
        | Route::HostDelete(_)
        | Route::HostToken(_)
        | Route::HostTagAdd(_)
        | Route::HostTagRemove(..)
        | Route::NodeAck(_)
        | Route::PageCreate
        | Route::PageRemove(_)
        | Route::WindowAdd
        | Route::WindowRemove(_)
        | Route::SilenceAdd
        | Route::SilenceRemove(_) => {
            Err(ApiError::new(500, "internal", "a write was sent to the read path; this is a bug").into())
        }
    }
}

fn dispatch_write(route: Route, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    use Role::{Admin, Operator};
    match route {
        // Beacon's body has `device_name` and no `node_id`; its credential is a fleet key.
        Route::Heartbeat => match req.beat.take().unwrap_or_else(|| Beat::parse(&req.body, req.bearer.as_deref())) {
            Beat::Beacon(beat) => beacon::heartbeat(req, *beat, txn, ctx),
            Beat::Hearth(beat) => agents::heartbeat(req, *beat, txn, ctx),
        },
        Route::Enroll => agents::enroll(req, txn, ctx),
        Route::Logout => session::logout(req, txn, ctx),
        Route::NodeEdit(id) => fleet::edit_node(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::NodeDelete(id) => fleet::delete_node(&require(Admin, req, txn, ctx)?, id, req, txn, ctx),
        Route::NodeToken(id) => fleet::mint_token(&require(Operator, req, txn, ctx)?, Some(id), req, txn, ctx),
        Route::TokenMint => fleet::mint_token(&require_relogin(Operator, req, txn, ctx)?, None, req, txn, ctx),
        Route::TokenRevoke(id) => fleet::revoke_token(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::FleetKeyMint => fleetkeys::mint(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::FleetKeyRevoke(id) => fleetkeys::revoke(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        // The registration token in the body is the credential; the host JWT, checked in `wrenn`.
        Route::HostRegister => wrenn::register(req, txn, ctx),
        Route::HostBeat(id) => wrenn::heartbeat(id, req, txn, ctx),
        Route::HostCreate => wrenn::create(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::HostToken(id) => wrenn::regenerate(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::HostTagAdd(id) => wrenn::add_tag(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::HostTagRemove(id, tag) => wrenn::remove_tag(&require(Operator, req, txn, ctx)?, id, tag, req, txn, ctx),
        Route::HostDelete(id) => wrenn::delete(&require(Admin, req, txn, ctx)?, id, req, txn, ctx),
        // No credential but the UUID or the ping key in the path, as Healthchecks' clients send.
        Route::Ping(rest) => pings::ping(rest, req, txn, ctx),
        Route::JobAdd => jobs::add(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::JobEdit(id) => jobs::edit(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::JobRemove(id) => jobs::remove(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::PingKeyRotate => jobs::rotate_key(&require(Admin, req, txn, ctx)?, req, txn, ctx),
        Route::PageCreate => status::create_page(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::PageRemove(slug) => status::remove_page(&require(Operator, req, txn, ctx)?, slug, req, txn, ctx),
        Route::NodeAck(id) => holds::acknowledge(&require(Operator, req, txn, ctx)?, id, req, txn, ctx),
        Route::WindowAdd => holds::add_window(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::WindowRemove(id) => {
            holds::remove(HoldKind::Maintenance, &require(Operator, req, txn, ctx)?, id, req, txn, ctx)
        }
        Route::SilenceAdd => holds::add_silence(&require(Operator, req, txn, ctx)?, req, txn, ctx),
        Route::SilenceRemove(id) => {
            holds::remove(HoldKind::Silenced, &require(Operator, req, txn, ctx)?, id, req, txn, ctx)
        }
        other => dispatch_read(other, req, txn, ctx),
    }
}

/// `GET /api/collector`: what the dashboard needs to know about this collector.
#[derive(Serialize)]
struct About {
    version: &'static str,
    /// Whether `--agent-dir` is set: without it, an install command fails on the host.
    agent_binaries: bool,
    /// `--public-url`, if set.
    public_url: Option<String>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    nodes: u64,
}

/// A person (or their API key) making a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct User {
    /// The user's name; `apikey:ID` for a key from before users existed.
    pub name: String,
    pub role: Role,
    /// Whether a browser session (the cookie) made the request, rather than an API key.
    pub by_cookie: bool,
}

const HOW_TO_GET_A_KEY: &str = "mint one with `hearth-collector apikey create --user NAME`";

/// Who is asking, if they may do what needs `needed`: 401 for no one (or an expired
/// session), 403 for the wrong kind of caller or too small a role.
fn require<T: ReadTxn>(needed: Role, req: &Request, txn: &Txn<T>, ctx: &Context) -> Result<User, Failure> {
    let user = authenticate(req, txn, ctx.now_ms)?;
    if let Some(message) = role_too_low(needed, &user, "ask an admin") {
        return Err(ApiError::forbidden(message).into());
    }
    // With SameSite=Strict cookies, this is the defence against cross-site requests: a
    // form on another site cannot send JSON, and script there cannot without CORS.
    if user.by_cookie && !matches!(req.method, Method::Get | Method::Head) && !req.is_json() {
        let message = "requests made with a session cookie must send Content-Type: application/json";
        return Err(ApiError::new(403, "csrf_rejected", message).into());
    }
    Ok(user)
}

/// `require`, except that a person whose role is too low gets 401, as restic-manager
/// answers a viewer who mints an enrolment token: its onboarding scripts take 401 on
/// `POST /api/enrollment-tokens` to mean "log in again as an operator or admin".
fn require_relogin<T: ReadTxn>(needed: Role, req: &Request, txn: &Txn<T>, ctx: &Context) -> Result<User, Failure> {
    let user = require(Role::Viewer, req, txn, ctx)?;
    if let Some(message) = role_too_low(needed, &user, "log in as an operator or admin") {
        return Err(ApiError::new(401, "role_too_low", message).into());
    }
    Ok(user)
}

/// Why `user` may not do what needs `needed`, if so, ending with what to do: `then`.
fn role_too_low(needed: Role, user: &User, then: &str) -> Option<String> {
    (user.role < needed).then(|| {
        format!("this needs the {} role, and {} is {}; {then}", needed.as_str(), user.name, user.role.as_str())
    })
}

fn authenticate<T: ReadTxn>(req: &Request, txn: &Txn<T>, now_ms: i64) -> Result<User, Failure> {
    if let Some(credential) = &req.bearer {
        if credential.starts_with(API_KEY_PREFIX) {
            if let Some(key) = txn.api_key(&secret::hash(credential))? {
                let Some(name) = key.user else {
                    return Ok(User { name: format!("apikey:{}", key.id), role: Role::Admin, by_cookie: false });
                };
                return match txn.user(&name)? {
                    Some(user) => Ok(User { name, role: user.role(), by_cookie: false }),
                    None => Err(ApiError::unauthorized(format!(
                        "this API key belonged to user {name}, who was removed; {HOW_TO_GET_A_KEY}"
                    ))
                    .into()),
                };
            }
        } else if (credential.starts_with(AGENT_PREFIX) || crate::jwt::looks_like(credential))
            && txn.agent_token_node(&secret::hash(credential))?.is_some()
        {
            let message = "an agent or host token may only send heartbeats; log in, or use an API key";
            return Err(ApiError::forbidden(message).into());
        } else if credential.starts_with(FLEET_PREFIX) && txn.fleet_key(&secret::hash(credential))?.is_some() {
            let message = "a fleet key may only enrol nodes and send their heartbeats; log in, or use an API key";
            return Err(ApiError::forbidden(message).into());
        }
        return Err(ApiError::unauthorized(format!("the API key is not valid; {HOW_TO_GET_A_KEY}")).into());
    }
    if let Some(cookie) = &req.session {
        if let Some(session) = txn.session(&secret::hash(cookie))?.filter(|s| s.expires_at > now_ms) {
            if let Some(user) = txn.user(&session.user)? {
                return Ok(User { role: user.role(), name: user.name, by_cookie: true });
            }
        }
        let message = "your session has expired or ended; log in again";
        return Err(ApiError::new(401, "session_expired", message).into());
    }
    let message = format!("log in first, or send an API key as `Authorization: Bearer hk_…` ({HOW_TO_GET_A_KEY})");
    Err(ApiError::unauthorized(message).into())
}

/// Appends to the audit log, inside the request's transaction.
fn audit(
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
    req: &Request,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: String,
) -> Result<(), store::Error> {
    let entry = AuditRecord {
        id: 0,
        at: ctx.now_ms,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        client: req.client_text(),
        detail,
    };
    txn.put_audit(entry)
}

/// The value of `name` in a query string (no percent-decoding: ids and times need none
/// but `+`, which stands for itself in an RFC 3339 offset here).
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.replace("%3A", ":").replace("%2B", "+"))
}

/// A 429 answer: try again in `wait_ms`.
fn too_many(what: &str, wait_ms: i64) -> ApiError {
    let wait = ((wait_ms + 999) / 1000).max(1);
    let error = ApiError::new(429, "too_many_requests", format!("{what}; try again in {wait} s"));
    ApiError { headers: vec![("Retry-After", wait.to_string())], ..error }
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

fn internal(e: getrandom::Error) -> Failure {
    log::error!("cannot get random bytes: {e}");
    ApiError::new(500, "internal", "the collector could not generate a secret; try again").into()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod routing_tests {
    use super::*;

    fn req(method: Method, path: &str, content_type: Option<&str>) -> Request {
        Request { method, path: path.into(), content_type: content_type.map(Into::into), ..Request::default() }
    }

    #[test]
    fn routing() {
        use Method::{Delete, Get, Head, Other, Post, Put};
        type Case<'a> = (Method, &'a str, Option<&'a str>, Result<Route<'a>, u16>);
        let json = Some("application/json");
        let cases: &[Case] = &[
            (Get, "/", None, Ok(Route::Asset("/"))),
            (Get, "/app.js", None, Ok(Route::Asset("/app.js"))),
            (Post, "/", json, Err(405)),
            (Get, "/install.sh", None, Ok(Route::InstallScript)),
            (Get, "/agent/binary", None, Ok(Route::AgentBinary)),
            (Get, "/agent/binary.sha256", None, Ok(Route::AgentChecksum)),
            (Get, "/healthz", None, Ok(Route::Health)),
            (Head, "/healthz", None, Ok(Route::Health)),
            (Post, "/api/agent/heartbeat", json, Ok(Route::Heartbeat)),
            (Post, "/agent/heartbeat", Some("application/json; charset=utf-8"), Ok(Route::Heartbeat)),
            (Post, "/agent/heartbeat", None, Ok(Route::Heartbeat)),
            (Post, "/agent/heartbeat", Some("text/plain"), Err(415)),
            (Get, "/agent/heartbeat", None, Err(405)),
            (Post, "/api/agents/enroll", json, Ok(Route::Enroll)),
            (Post, "/api/auth/login", json, Ok(Route::Login)),
            (Post, "/api/auth/login", Some("application/x-www-form-urlencoded"), Err(415)),
            (Get, "/api/auth/me", None, Ok(Route::Me)),
            (Get, "/api/nodes/", None, Ok(Route::Nodes)),
            (Get, "/api/nodes/abc", None, Ok(Route::Node("abc"))),
            (Put, "/api/nodes/abc", json, Ok(Route::NodeEdit("abc"))),
            (Delete, "/api/nodes/abc", None, Ok(Route::NodeDelete("abc"))),
            (Post, "/api/nodes/abc", json, Err(405)),
            (Post, "/api/nodes/abc/token", json, Ok(Route::NodeToken("abc"))),
            (Get, "/api/nodes/abc/token", None, Err(405)),
            (Get, "/api/nodes/abc/x", None, Err(404)),
            (Get, "/api/nodes/abc/uptime", None, Ok(Route::NodeUptime("abc"))),
            (Post, "/api/nodes/abc/uptime", json, Err(405)),
            (Post, "/api/nodes/abc/ack", json, Ok(Route::NodeAck("abc"))),
            (Get, "/api/maintenance", None, Ok(Route::Windows)),
            (Post, "/api/maintenance", json, Ok(Route::WindowAdd)),
            (Delete, "/api/maintenance/w1", None, Ok(Route::WindowRemove("w1"))),
            (Get, "/api/silences", None, Ok(Route::Silences)),
            (Post, "/api/silences", json, Ok(Route::SilenceAdd)),
            (Delete, "/api/silences/s1", None, Ok(Route::SilenceRemove("s1"))),
            (Put, "/api/silences", json, Err(405)),
            (Get, "/status/home", None, Ok(Route::StatusPage("home"))),
            (Get, "/status/home.json", None, Ok(Route::StatusPage("home.json"))),
            (Post, "/status/home", json, Err(405)),
            (Get, "/status/a/b", None, Err(404)),
            (Get, "/status.css", None, Ok(Route::StatusCss)),
            (Get, "/api/collector", None, Ok(Route::Collector)),
            (Post, "/api/status-pages", json, Ok(Route::PageCreate)),
            (Delete, "/api/status-pages/home", None, Ok(Route::PageRemove("home"))),
            (Post, "/api/nodes//token", json, Err(404)),
            (Get, "/api/enrollment-tokens", None, Ok(Route::Tokens)),
            (Post, "/api/enrollment-tokens", json, Ok(Route::TokenMint)),
            (Delete, "/api/enrollment-tokens/abc", Some("text/plain"), Err(415)),
            (Delete, "/api/enrollment-tokens/abc", None, Ok(Route::TokenRevoke("abc"))),
            (Get, "/api/audit", None, Ok(Route::Audit)),
            (Get, "/api/fleet-keys", None, Ok(Route::FleetKeys)),
            (Post, "/api/fleet-keys", json, Ok(Route::FleetKeyMint)),
            (Put, "/api/fleet-keys", json, Err(405)),
            (Delete, "/api/fleet-keys/abc", None, Ok(Route::FleetKeyRevoke("abc"))),
            (Get, "/api/fleet-keys/abc", None, Err(405)),
            (Delete, "/api/fleet-keys/abc/x", None, Err(404)),
            (Get, "/install/install.sh", None, Ok(Route::InstallScript)),
            (Get, "/api/hosts", None, Ok(Route::ResticHosts)),
            (Get, "/v1/hosts", None, Ok(Route::HostList)),
            (Post, "/v1/hosts", json, Ok(Route::HostCreate)),
            (Delete, "/v1/hosts", None, Err(405)),
            (Post, "/v1/hosts/register", json, Ok(Route::HostRegister)),
            (Get, "/v1/hosts/register", None, Err(405)),
            (Get, "/v1/hosts/h1", None, Ok(Route::Host("h1"))),
            (Delete, "/v1/hosts/h1", None, Ok(Route::HostDelete("h1"))),
            (Put, "/v1/hosts/h1", json, Err(405)),
            (Post, "/v1/hosts/h1/token", None, Ok(Route::HostToken("h1"))),
            (Post, "/v1/hosts/h1/heartbeat", None, Ok(Route::HostBeat("h1"))),
            (Post, "/v1/hosts/h1/heartbeat", Some("text/plain"), Err(415)),
            (Get, "/v1/hosts/h1/heartbeat", None, Err(405)),
            (Get, "/v1/hosts/h1/tags", None, Ok(Route::HostTags("h1"))),
            (Post, "/v1/hosts/h1/tags", json, Ok(Route::HostTagAdd("h1"))),
            (Delete, "/v1/hosts/h1/tags/gpu", None, Ok(Route::HostTagRemove("h1", "gpu"))),
            (Delete, "/v1/hosts/h1/tags/a/b", None, Err(404)),
            (Get, "/v1/hosts//tags", None, Err(404)),
            (Get, "/v1/hosts/h1/other", None, Err(404)),
            (Get, "/nope", None, Err(404)),
            (Get, "/ping/abc", None, Ok(Route::Ping("abc"))),
            (Head, "/ping/abc/start", None, Ok(Route::Ping("abc/start"))),
            (Post, "/ping/abc/fail", Some("application/x-www-form-urlencoded"), Ok(Route::Ping("abc/fail"))),
            (Put, "/ping/abc", json, Err(405)),
            (Get, "/api/jobs", None, Ok(Route::Jobs)),
            (Post, "/api/jobs", json, Ok(Route::JobAdd)),
            (Get, "/api/jobs/j1", None, Ok(Route::Job("j1"))),
            (Put, "/api/jobs/j1", json, Ok(Route::JobEdit("j1"))),
            (Delete, "/api/jobs/j1", None, Ok(Route::JobRemove("j1"))),
            (Get, "/api/jobs/j1/pings/7", None, Ok(Route::JobPing("j1", "7"))),
            (Get, "/api/jobs/j1/x", None, Err(404)),
            (Post, "/api/jobs/ping-key", json, Ok(Route::PingKeyRotate)),
            (Other, "/healthz", None, Err(405)),
        ];
        for (method, path, ct, expected) in cases {
            let request = req(*method, path, *ct);
            let got = route(&request).map_err(|e| e.status);
            assert_eq!(&got, expected, "{method:?} {path} {ct:?}");
        }
    }

    #[test]
    fn errors_are_json_with_code_and_sentence() {
        let reply = ApiError::body_too_large_than(MAX_BODY).into_reply();
        assert_eq!(reply.status, 413);
        let body: ErrorBody = json::from_str(std::str::from_utf8(&reply.body).unwrap()).unwrap();
        assert_eq!(body.code, "body_too_large");
        assert!(body.error.contains("65536"));
    }

    #[test]
    fn store_failures_become_507_or_500() {
        let full = ApiError::storage(&store::Error::Full);
        assert_eq!((full.status, full.code), (507, "storage_full"));
        let broken = ApiError::storage(&store::Error::lmdb_failure());
        assert_eq!((broken.status, broken.code), (500, "internal"));
        // A damaged record fails only the request that read it, not the whole batch.
        match Failure::from(store::Error::Corrupt("x".into())) {
            Failure::Api(e) => assert_eq!(e.status, 500),
            Failure::Store(_) => panic!("a damaged record must not abort the batch"),
        }
        assert!(matches!(Failure::from(store::Error::Full), Failure::Store(_)));
    }
}
