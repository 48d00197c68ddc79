//! The fleet, for people: nodes, enrolment tokens, events, alerts and the audit log.

use super::uptime;
use super::{audit, internal, limit_param, query_param, too_many, ApiError, Context, Handled, Reply, Request, User};
use crate::alerts::{self, Holds};
use crate::maintenance::HoldKind;
use crate::model::{
    node_key, AlertRecord, AuditRecord, DeliveryState, EnrollTokenRecord, EventKind, EventRecord, NodeRecord, NodeView,
};
use crate::secret::{self, ENROLL_PREFIX};
use crate::store;
use crate::store::{ReadTxn, RwTxn, Txn};
use crate::uptime::Window;
use hearth_wire::format_rfc3339;
use miniserde::{json, Deserialize, Serialize};

/// The most nodes one page of `GET /api/nodes` holds, and how many it holds by default.
const MAX_PAGE: usize = 5000;
const DEFAULT_PAGE: usize = 1000;

/// `GET /api/nodes?limit=N&after=ID[&changed_since=CURSOR]`: a page of nodes in id order,
/// and the id to ask for the next page after (`next`), or `null` on the last page; with
/// `changed_since`, only the nodes that changed since the `cursor` an earlier answer gave.
/// Every answer carries a fresh `cursor` and the fleet's `total`.
pub(super) fn nodes<T: ReadTxn>(req: &Request, txn: &Txn<T>, ctx: &Context) -> Handled {
    let limit = match query_param(&req.query, "limit") {
        None => DEFAULT_PAGE,
        Some(text) => text.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::new(400, "invalid_query", format!("limit={text} must be a whole number from 1 to {MAX_PAGE}"))
        })?,
    };
    let after = query_param(&req.query, "after").filter(|id| !id.is_empty()).map(|id| id.to_ascii_lowercase());
    if after.as_ref().is_some_and(|id| id.len() > 64) {
        return Err(ApiError::new(400, "invalid_query", "after= must be a node id, from the last page's `next`").into());
    }
    let since = match query_param(&req.query, "changed_since") {
        None => None,
        Some(text) => Some(text.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(|| {
            ApiError::new(
                400,
                "invalid_query",
                format!("changed_since={text} must be the `cursor` of an earlier answer"),
            )
        })?),
    };
    let holds = Holds::load(txn)?;
    let (page, more) = match since {
        // A window or silence that began or ended since then may change any node's view, and
        // so may this collector's start (status counts silence from it: `status_grace_ms`).
        Some(since) if since >= ctx.watching_since && !holds.changed_between(since, ctx.now_ms) => {
            changed_page(txn, ctx, since, after.as_deref(), limit)?
        }
        _ => txn.nodes_page(after.as_deref(), limit)?,
    };
    let next = page.last().filter(|_| more).map(|n| n.node_id.clone());
    // Each record goes as its view is made: a page of 5,000 is not held twice.
    let mut nodes = Vec::with_capacity(page.len());
    for n in page {
        nodes.push(view(&n, txn, ctx, &holds)?);
    }
    // A write stamped before this snapshot may commit after it: the next refresh starts
    // from the earliest stamp such a write of this collector can have (`settled_ms`),
    // and two seconds earlier still, for a command-line change committing beside it,
    // stamped once it holds the store (clients merge what they get twice).
    let cursor = (ctx.settled_ms - CURSOR_OVERLAP_MS).max(0).to_string();
    Ok(Reply::json(200, &NodeList { nodes, next, cursor, total: txn.node_count()? }))
}

/// How far each `cursor` reaches back before the earliest write its snapshot may lack.
const CURSOR_OVERLAP_MS: i64 = 2_000;

/// Up to `limit` nodes after `after`, in id order, that changed since `since`; and whether more follow.
fn changed_page<T: ReadTxn>(
    txn: &Txn<T>,
    ctx: &Context,
    since: i64,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<NodeRecord>, bool), store::Error> {
    let mut ids = Vec::new();
    txn.each_node_status(false, |n| {
        if ids.len() <= limit
            && after.is_none_or(|a| n.node_id.as_str() > a)
            && n.changed_between(since, ctx.now_ms, ctx.status_grace_ms(&n))
        {
            ids.push(n.node_id);
        }
    })?;
    let more = ids.len() > limit;
    let mut page = Vec::with_capacity(limit.min(ids.len()));
    for id in ids.iter().take(limit) {
        if let Some(node) = txn.node(id)? {
            page.push(node);
        }
    }
    Ok((page, more))
}

/// A node as the API shows it, with its uptime over 24 hours and 30 days, and what holds its alerts.
fn view<T: ReadTxn>(node: &NodeRecord, txn: &Txn<T>, ctx: &Context, holds: &Holds) -> Result<NodeView, store::Error> {
    let mut view = node.view(ctx.now_ms, ctx.status_grace_ms(node));
    let spans = uptime::spans(txn, node, ctx.now_ms, holds)?;
    view.uptime_24h = uptime::ratio_over(node, &spans, Window::Day, ctx.now_ms);
    view.uptime_30d = uptime::ratio_over(node, &spans, Window::Month, ctx.now_ms);
    if let Some(hold) = holds.hold(node, ctx.now_ms) {
        let until = Some(format_rfc3339(hold.until));
        match hold.kind {
            HoldKind::Maintenance => view.maintenance_until = until,
            HoldKind::Silenced => view.silenced_until = until,
        }
    }
    Ok(view)
}

pub(super) fn node<T: ReadTxn>(id: &str, txn: &Txn<T>, ctx: &Context) -> Handled {
    match txn.node(&node_key(id))? {
        Some(node) => Ok(Reply::json(200, &view(&node, txn, ctx, &Holds::load(txn)?)?)),
        None => Err(no_such_node(id).into()),
    }
}

pub(super) fn no_such_node(id: &str) -> ApiError {
    ApiError::not_found(format!("no node has the id {id}"))
}

/// What `PUT /api/nodes/{id}` may change; a field left out stays as it is.
#[derive(Deserialize, Debug, Default)]
struct NodeEdit {
    name: Option<String>,
    tags: Option<Vec<String>>,
    /// 0 goes back to the interval the agent announces.
    interval_secs: Option<u64>,
    /// 0 goes back to the default grace.
    grace_secs: Option<u64>,
}

pub(super) fn edit_node(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let shape = r#"{"name": "…", "tags": ["…"], "interval_secs": 60, "grace_secs": 180}"#;
    let edit: NodeEdit = parse_known_body(req, shape, &["name", "tags", "interval_secs", "grace_secs"])?;
    let id = node_key(id);
    let Some(mut node) = txn.node(&id)? else { return Err(no_such_node(&id).into()) };
    let previous = node.deadline;
    let mut changed = Vec::new();
    if let Some(name) = edit.name {
        check_label("name", &name)?;
        changed.push(format!("name {:?} → {name:?}", node.name));
        node.name = name;
        node.edited_at = Some(ctx.now_ms);
    }
    if let Some(tags) = edit.tags {
        check_tags(&tags)?;
        changed.push(format!("tags {:?} → {tags:?}", node.tags));
        node.tags = tags;
        node.edited_at = Some(ctx.now_ms);
    }
    if let Some(secs) = edit.interval_secs {
        check_secs("interval_secs", secs)?;
        // Shorter than the agent says it beats, the node would page between its heartbeats.
        let announced = node.heartbeat.as_ref().and_then(|hb| hb.interval_secs).filter(|a| (1..*a).contains(&secs));
        if let Some(announced) = announced {
            return Err(ApiError::invalid(format!(
                "this node's agent says it beats every {announced} s: judged by {secs} s it would page between \
                 two of its heartbeats; give at least {announced}, or 0 to go by the agent"
            ))
            .into());
        }
        node.interval_override = Some(secs).filter(|s| *s > 0);
        changed.push(format!("interval {secs} s"));
    }
    if let Some(secs) = edit.grace_secs {
        check_secs("grace_secs", secs)?;
        node.grace_secs = Some(secs).filter(|s| *s > 0);
        changed.push(format!("grace {secs} s"));
    }
    // A new interval or grace takes effect at once: the sweep looks at the node again now.
    if previous.is_some() {
        node.deadline = Some(ctx.now_ms);
    }
    txn.save_node(&node, previous)?;
    audit(txn, ctx, req, &user.name, "node_updated", Some(&id), changed.join("; "))?;
    log::info!("{} edited node {id}", user.name);
    Ok(Reply::json(200, &view(&node, txn, ctx, &Holds::load(txn)?)?))
}

pub(super) fn delete_node(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let id = node_key(id);
    let Some(node) = txn.node(&id)? else { return Err(no_such_node(&id).into()) };
    alerts::delete_node(txn, &node, &user.name, ctx.now_ms, ctx.channels)?;
    let detail = format!("{} ({}); its agent token is revoked", node.name, node.hostname);
    audit(txn, ctx, req, &user.name, "node_deleted", Some(&id), detail)?;
    log::info!("{} deleted node {id} ({})", user.name, node.name);
    Ok(Reply::json(200, &Deleted { deleted: id }))
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

/// `POST /api/enrollment-tokens` and `POST /api/nodes/{id}/token`.
#[derive(Deserialize, Debug, Default)]
struct TokenRequest {
    name: Option<String>,
    hostname: Option<String>,
    tags: Option<Vec<String>>,
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct MintedToken {
    /// The raw token: in this answer and nowhere else.
    token: String,
    id: String,
    expires_at: String,
    node_id: Option<String>,
    install_command: String,
}

/// The longest an enrolment token may live: 30 days.
const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;

/// Mints an enrolment token; bound to `node` (re-enrolment of a host whose state was lost) if given.
pub(super) fn mint_token(
    user: &User,
    node: Option<&str>,
    req: &Request,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Handled {
    let asked: TokenRequest = parse_body(req, r#"{"name": "…", "hostname": "…", "tags": ["…"], "ttl_secs": 3600}"#)?;
    let limit = ctx.limits.mints_per_user;
    if let Err(wait) = ctx.limits.take(&format!("mint:{}", user.name), limit, ctx.now_ms, req.seq) {
        let what = format!("{} may mint at most {} enrolment tokens an hour", user.name, limit.count);
        return Err(too_many(&what, wait).into());
    }
    let ttl = asked.ttl_secs.unwrap_or(3600);
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(format!("ttl_secs must be from 60 to {MAX_TOKEN_TTL_SECS}, not {ttl}")).into());
    }
    for (field, value) in [("name", &asked.name), ("hostname", &asked.hostname)] {
        if let Some(value) = value {
            check_label(field, value)?;
        }
    }
    let tags = asked.tags.unwrap_or_default();
    check_tags(&tags)?;
    let node_id = match node {
        Some(id) => {
            let id = node_key(id);
            if txn.node(&id)?.is_none() {
                return Err(no_such_node(&id).into());
            }
            Some(id)
        }
        None => None,
    };
    let token = secret::new_secret(ENROLL_PREFIX).map_err(internal)?;
    let record = EnrollTokenRecord {
        id: secret::new_id().map_err(internal)?,
        name: asked.name,
        hostname: asked.hostname,
        tags,
        node_id: node_id.clone(),
        created_by: Some(user.name.clone()),
        created_at: ctx.now_ms,
        expires_at: ctx.now_ms + ttl as i64 * 1000,
        used_at: None,
        used_by: None,
    };
    txn.put_enroll_token(&secret::hash(&token), &record)?;
    let detail = match &node_id {
        Some(id) => format!("re-enrolment token for node {id}, valid {ttl} s"),
        None => format!("enrolment token, valid {ttl} s"),
    };
    audit(txn, ctx, req, &user.name, "token_minted", Some(&record.id), detail)?;
    log::info!("{} minted enrolment token {}", user.name, record.id);
    let install_command = install_command(&server_url(req, ctx), &token);
    let minted =
        MintedToken { token, id: record.id, expires_at: format_rfc3339(record.expires_at), node_id, install_command };
    // 200, not 201: restic-manager's onboarding, which Hearth serves unchanged, says so.
    Ok(Reply::json(200, &minted))
}

/// The collector's address as nodes reach it: `--public-url`, else what the request came
/// to. A forwarded request is taken to have come over https (cloudflared, a reverse
/// proxy), whatever it says: an install line must not fetch code over plain HTTP.
pub(super) fn server_url(req: &Request, ctx: &Context) -> String {
    if let Some(url) = ctx.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if req.https || req.forwarded_https || req.forwarded { "https" } else { "http" };
    // The Host header is the client's to write: only a plain host[:port] is used.
    let host = req.host.as_deref().filter(|h| {
        !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    format!("{scheme}://{}", host.unwrap_or("127.0.0.1:8088"))
}

/// The line to paste on the new host, every value quoted for the shell.
fn install_command(server: &str, token: &str) -> String {
    let (server, token) = (sh_quote(server), sh_quote(token));
    format!("curl -fsSL {server}/install.sh | sudo HEARTH_SERVER={server} HEARTH_TOKEN={token} sh")
}

/// `value` as one shell word: in single quotes, with any single quote spelled `'\''`.
pub(super) fn sh_quote(value: &str) -> String {
    let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[derive(Serialize)]
struct TokenList {
    tokens: Vec<TokenView>,
}

/// A token as listings show it: never its raw value.
#[derive(Serialize)]
struct TokenView {
    id: String,
    /// `valid`, `used` or `expired`.
    state: &'static str,
    name: Option<String>,
    hostname: Option<String>,
    tags: Vec<String>,
    node_id: Option<String>,
    created_by: Option<String>,
    created_at: String,
    expires_at: String,
    used_at: Option<String>,
    used_by: Option<String>,
}

pub(super) fn tokens<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut records: Vec<EnrollTokenRecord> = txn.enroll_tokens()?.into_iter().map(|(_, t)| t).collect();
    records.sort_by_key(|t| std::cmp::Reverse(t.created_at));
    let tokens = records
        .into_iter()
        .map(|t| TokenView {
            state: if t.used_at.is_some() {
                "used"
            } else if t.expires_at <= ctx.now_ms {
                "expired"
            } else {
                "valid"
            },
            created_at: format_rfc3339(t.created_at),
            expires_at: format_rfc3339(t.expires_at),
            used_at: t.used_at.map(format_rfc3339),
            id: t.id,
            name: t.name,
            hostname: t.hostname,
            tags: t.tags,
            node_id: t.node_id,
            created_by: t.created_by,
            used_by: t.used_by,
        })
        .collect();
    Ok(Reply::json(200, &TokenList { tokens }))
}

pub(super) fn revoke_token(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let Some((hash, _)) = txn.enroll_tokens()?.into_iter().find(|(_, t)| t.id == id) else {
        return Err(ApiError::not_found(format!("no enrolment token has the id {id}")).into());
    };
    txn.delete_enroll_token(&hash)?;
    audit(txn, ctx, req, &user.name, "token_revoked", Some(id), String::new())?;
    log::info!("{} revoked enrolment token {id}", user.name);
    Ok(Reply::json(200, &Revoked { revoked: id.to_owned() }))
}

#[derive(Serialize)]
struct Revoked {
    revoked: String,
}

pub(super) fn events<T: ReadTxn>(req: &Request, txn: &Txn<T>) -> Handled {
    let node = query_param(&req.query, "node").map(|n| node_key(&n));
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

pub(super) fn alerts<T: ReadTxn>(req: &Request, txn: &Txn<T>) -> Handled {
    let alerts = txn.alerts(limit_param(&req.query)?)?.iter().map(AlertView::from).collect();
    Ok(Reply::json(200, &AlertList { alerts }))
}

/// `GET /api/audit?limit=N&before=ID`: the newest entries first, a page at a time; `next`
/// is the `before=` of the next (older) page, `null` on the last.
pub(super) fn audit_log<T: ReadTxn>(req: &Request, txn: &Txn<T>) -> Handled {
    let before = match query_param(&req.query, "before") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::new(
                400,
                "invalid_query",
                format!("before={text} must be an entry id, from the last page's `next`"),
            )
        })?),
    };
    let (page, more) = txn.audit_page(before, limit_param(&req.query)?)?;
    let next = page.last().filter(|_| more).map(|e| e.id);
    Ok(Reply::json(200, &AuditList { entries: page.iter().map(AuditView::from).collect(), next }))
}

#[derive(Serialize)]
struct AuditList {
    entries: Vec<AuditView>,
    next: Option<u64>,
}

#[derive(Serialize)]
struct AuditView {
    id: u64,
    at: String,
    actor: String,
    action: String,
    target: Option<String>,
    client: String,
    detail: String,
}

impl From<&AuditRecord> for AuditView {
    fn from(a: &AuditRecord) -> AuditView {
        AuditView {
            id: a.id,
            at: format_rfc3339(a.at),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            client: a.client.clone(),
            detail: a.detail.clone(),
        }
    }
}

/// Reads a JSON object body into `T`; an empty body is `{}`. A field of the wrong type is
/// named (miniserde's own error says nothing of where it stopped).
pub(super) fn parse_body<T: Deserialize + Default>(req: &Request, shape: &str) -> Result<T, ApiError> {
    if req.body.trim().is_empty() {
        return Ok(<T as Default>::default());
    }
    json::from_str(&req.body).map_err(|_| match wrong_field::<T>(&req.body) {
        Some(field) => ApiError::new(
            400,
            "invalid_field",
            format!("the field `{field}` has the wrong type; the body must be a JSON object like {shape}"),
        ),
        None => ApiError::new(400, "invalid_json", format!("the body must be a JSON object like {shape}")),
    })
}

/// `parse_body`, refusing a field the route does not take (`known`): a misspelt field is
/// otherwise dropped, and `{"nodes": [ID]}` for `node_ids` makes a maintenance window meant
/// for one node cover every node. (Routes other systems' clients call, which send fields of
/// their own, use `parse_body`.)
pub(super) fn parse_known_body<T: Deserialize + Default>(
    req: &Request,
    shape: &str,
    known: &[&str],
) -> Result<T, ApiError> {
    let body = parse_body(req, shape)?;
    let object: json::Object = json::from_str(&req.body).unwrap_or_default();
    match object.keys().take(FIELDS_LOOKED_AT + 1).find(|key| !known.contains(&key.as_str())) {
        Some(key) => {
            let key: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
            let message = format!("there is no field `{key}` here; the fields are {}", known.join(", "));
            Err(ApiError::new(400, "unknown_field", message))
        }
        None => Ok(body),
    }
}

/// The first field (in key order) of the JSON object `body` that `T` refuses on its own, when `T` takes an
/// empty object (all its fields optional), so that the field alone is to blame. Only the
/// first [`FIELDS_LOOKED_AT`] are looked at: this runs on the request thread.
fn wrong_field<T: Deserialize>(body: &str) -> Option<String> {
    let object: json::Object = json::from_str(body).ok()?;
    json::from_str::<T>("{}").ok()?;
    object.into_iter().take(FIELDS_LOOKED_AT).find_map(|(key, value)| {
        let alone = json::to_string(&json::Object::from_iter([(key.clone(), value)]));
        json::from_str::<T>(&alone).is_err().then(|| key.chars().take(64).collect())
    })
}

/// More fields than any body of the API has.
const FIELDS_LOOKED_AT: usize = 32;

/// A name or hostname: 1 to 64 characters, no control characters.
pub(super) fn check_label(field: &str, value: &str) -> Result<(), ApiError> {
    let odd = |c: char| c.is_control() || hearth_wire::fields::is_deceptive(c);
    if value.trim().is_empty() || value.chars().count() > 64 || value.chars().any(odd) {
        let message = format!("{field} must be 1 to 64 printable characters, without control or bidirectional ones");
        return Err(ApiError::invalid(message));
    }
    Ok(())
}

/// At most 32 tags of 1 to 64 letters, digits, `-`, `_`, `.`, `:` or `=`.
pub(super) fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > 32 {
        return Err(ApiError::invalid("a node may have at most 32 tags"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:=".contains(c);
    if let Some(bad) = tags.iter().find(|t| !(1..=64).contains(&t.len()) || !t.chars().all(allowed)) {
        let message = format!("the tag {bad:?} is not allowed: use 1 to 64 letters, digits, `-`, `_`, `.`, `:` or `=`");
        return Err(ApiError::invalid(message));
    }
    Ok(())
}

/// An interval or grace: 0 (the default) or 5 seconds to a week.
fn check_secs(field: &str, secs: u64) -> Result<(), ApiError> {
    if secs != 0 && !(5..=7 * 86_400).contains(&secs) {
        return Err(ApiError::invalid(format!("{field} must be 0 (the default) or 5 to 604800 seconds, not {secs}")));
    }
    Ok(())
}

#[derive(Serialize)]
struct NodeList {
    nodes: Vec<NodeView>,
    next: Option<String>,
    /// Pass as `changed_since` to get only what changed after this answer.
    cursor: String,
    /// How many nodes the fleet holds: a client whose copy holds more missed a deletion.
    total: u64,
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
    kind: EventKind,
    check: Option<String>,
    detail: String,
    /// Why its alert was held (maintenance, a silence, an acknowledgement), if it was.
    held: Option<String>,
}

impl From<&EventRecord> for EventView {
    fn from(e: &EventRecord) -> EventView {
        let (id, node_id, at) = (e.id, e.node_id.clone(), hearth_wire::format_rfc3339(e.at));
        let (check, detail, held) = (e.check.clone(), e.detail.clone(), e.held.clone());
        EventView { id, node_id, at, kind: e.kind, check, detail, held }
    }
}

#[derive(Serialize)]
struct AlertList {
    alerts: Vec<AlertView>,
}

#[derive(Serialize)]
struct AlertView {
    id: u64,
    kind: EventKind,
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
    state: DeliveryState,
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
                state: d.state,
                attempts: d.attempts,
                last_error: d.last_error.clone(),
                delivered_at: d.delivered_at.map(hearth_wire::format_rfc3339),
                next_attempt: (d.state == DeliveryState::Pending).then(|| hearth_wire::format_rfc3339(d.next_attempt)),
            })
            .collect();
        AlertView {
            id: a.id,
            kind: a.kind,
            node_id: a.node_id.clone(),
            name: a.name.clone(),
            check: a.check.clone(),
            detail: a.detail.clone(),
            at: hearth_wire::format_rfc3339(a.at),
            deliveries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::Policy;

    fn ctx_parts() -> (Policy, crate::alerts::config::Channels, std::sync::Mutex<crate::metrics::Metrics>) {
        (<Policy as Default>::default(), crate::alerts::config::Channels::default(), Default::default())
    }

    #[test]
    fn install_commands_quote_what_could_break_the_line() {
        assert_eq!(sh_quote("https://h.example:8443"), "https://h.example:8443");
        assert_eq!(sh_quote("a b;rm -rf /"), "'a b;rm -rf /'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        let line = install_command("https://h.example/x y", "hen_abc");
        assert_eq!(line, "curl -fsSL 'https://h.example/x y'/install.sh | sudo HEARTH_SERVER='https://h.example/x y' HEARTH_TOKEN=hen_abc sh");
    }

    #[test]
    fn forwarded_requests_get_https_and_odd_hosts_are_not_used() {
        let (policy, channels, metrics) = ctx_parts();
        let stats = crate::alerts::worker::Stats::default();
        let logins = Default::default();
        let limits = Default::default();
        let ctx = Context {
            now_ms: 0,
            settled_ms: 0,
            allow_anonymous: false,
            policy: &policy,
            watching_since: 0,
            channels: &channels,
            metrics: &metrics,
            alert_stats: &stats,
            logins: &logins,
            limits: &limits,
            agent_dir: None,
            public_url: None,
            cert_pin: None,
            status_pages: &Default::default(),
        };
        let direct = Request { host: Some("10.0.0.5:8088".into()), ..Request::default() };
        assert_eq!(server_url(&direct, &ctx), "http://10.0.0.5:8088");
        let tunnelled = Request { host: Some("hearth.example.com".into()), forwarded: true, ..Request::default() };
        assert_eq!(server_url(&tunnelled, &ctx), "https://hearth.example.com");
        let hostile = Request { host: Some("x$(reboot)".into()), ..Request::default() };
        assert_eq!(server_url(&hostile, &ctx), "http://127.0.0.1:8088");
        let public = Context { public_url: Some("https://hearth.example.com/"), ..ctx };
        assert_eq!(server_url(&tunnelled, &public), "https://hearth.example.com");
    }
}
