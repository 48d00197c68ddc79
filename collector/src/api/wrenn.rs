//! Wrenn's host API (`/v1/hosts…`): people create a host and get a one-time registration
//! token; the host agent trades it for a host JWT (`jwt.rs`) and beats with that JWT.
//!
//! A Wrenn host is a node: its heartbeats feed the same liveness rules, alerts and
//! dashboard. What Wrenn says of a host beyond that (address, specs, whether it has
//! registered) is its `HostRecord`. Teams and "bring your own cloud" have no meaning in
//! Hearth: `type`, `team_id`, `provider` and `availability_zone` in a request are ignored,
//! and every host answers `"type": "regular"`, `"team_id": null`.
//! Errors on these routes have Wrenn's shape, `{"error": {"code", "message"}}` ([`error_reply`]).

use super::{audit, fleet, internal, too_many, ApiError, Context, Failure, Handled, Reply, Request, User};
use crate::alerts;
use crate::jwt::{self, Claims};
use crate::model::{EnrollTokenRecord, HostRecord, HostState, NodeRecord, Status};
use crate::secret::{self, ENROLL_PREFIX};
use crate::store::{self, setting, ReadTxn, RwTxn, Txn};
use hearth_wire::fields::Fields;
use hearth_wire::{format_rfc3339, Heartbeat};
use miniserde::Serialize;

/// How long a host JWT is valid: a year, as Wrenn's control plane makes them.
const HOST_TOKEN_SECS: i64 = 365 * 86_400;
/// How long a registration token is valid: an hour.
const REGISTRATION_MS: i64 = 3_600_000;
/// The interval Wrenn's host agent beats at (the seed's 30 s), for the liveness rules.
const HOST_INTERVAL_SECS: u64 = 30;

/// Whether `path` is one of Wrenn's routes, whose errors take Wrenn's shape.
pub(super) fn is_v1_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

#[derive(Serialize)]
struct V1Error {
    error: V1ErrorDetail,
}

#[derive(Serialize)]
struct V1ErrorDetail {
    code: String,
    message: String,
}

/// An error as Wrenn's clients read it.
pub(super) fn error_reply(e: ApiError) -> Reply {
    let body = V1Error { error: V1ErrorDetail { code: e.code.to_owned(), message: e.message } };
    Reply { headers: e.headers, ..Reply::json(e.status, &body) }
}

/// A host as Wrenn's API shows it.
#[derive(Serialize)]
struct HostView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    team_id: Option<String>,
    provider: Option<String>,
    availability_zone: Option<String>,
    arch: Option<String>,
    cpu_cores: Option<u64>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
    address: Option<String>,
    status: &'static str,
    last_heartbeat_at: Option<String>,
    created_by: String,
    created_at: String,
    updated_at: String,
    /// Hearth's own: the node's name and tags.
    name: String,
    tags: Vec<String>,
}

/// Wrenn's status for a host: `pending` until it registers, then its node's liveness
/// (`late` is still `online`, `stopped` is `offline`); registering counts as being heard
/// from (`register`).
fn host_status(host: &HostRecord, node: &NodeRecord, ctx: &Context) -> &'static str {
    if host.state == HostState::Pending {
        return "pending";
    }
    if node.down_since.is_some() {
        // Declared offline (or, with --pending-alert-secs, never heard from): it is told so.
        return "offline";
    }
    let grace = ctx.status_grace_ms(node);
    if node.last_seen.is_none() {
        // Registered by a collector that did not count registering as being heard from:
        // a grace from its last change, at the earliest from this collector's start.
        let since = host.updated_at.max(ctx.watching_since);
        return if ctx.now_ms.saturating_sub(since).max(0) as u64 > grace { "offline" } else { "online" };
    }
    match node.status(ctx.now_ms, grace) {
        Status::Pending | Status::Online | Status::Late => "online",
        Status::Offline | Status::Stopped => "offline",
    }
}

fn view(host: &HostRecord, node: &NodeRecord, ctx: &Context) -> HostView {
    HostView {
        id: node.node_id.clone(),
        kind: "regular",
        team_id: None,
        provider: None,
        availability_zone: None,
        arch: host.arch.clone(),
        cpu_cores: host.cpu_cores,
        memory_mb: host.memory_mb,
        disk_gb: host.disk_gb,
        address: host.address.clone(),
        status: host_status(host, node, ctx),
        // Registering counts as being heard from (`register`), but is no heartbeat.
        last_heartbeat_at: node.heartbeat.as_ref().and(node.last_seen).map(format_rfc3339),
        created_by: host.created_by.clone(),
        created_at: format_rfc3339(host.created_at),
        updated_at: format_rfc3339(host.updated_at.max(node.last_seen.unwrap_or(0))),
        name: node.name.clone(),
        tags: node.tags.clone(),
    }
}

fn no_such_host(id: &str) -> ApiError {
    ApiError::not_found(format!("no host has the id {id}"))
}

/// The host `id` and its node, or 404.
fn find<T: ReadTxn>(id: &str, txn: &Txn<T>) -> Result<(HostRecord, NodeRecord), Failure> {
    let id = id.to_ascii_lowercase();
    match (txn.host(&id)?, txn.node(&id)?) {
        (Some(host), Some(node)) => Ok((host, node)),
        _ => Err(no_such_host(&id).into()),
    }
}

/// A body that, if there is one, must be a JSON object; returns its fields.
fn object(req: &Request) -> Result<Option<Fields>, Failure> {
    if req.body.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Fields::parse(&req.body)?))
}

/// `GET /v1/hosts`: every host, in id order.
pub(super) fn list<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut out = Vec::new();
    for (id, host) in txn.hosts()? {
        if let Some(node) = txn.node(&id)? {
            out.push(view(&host, &node, ctx));
        }
    }
    Ok(Reply::json(200, &out))
}

/// `GET /v1/hosts/{id}`.
pub(super) fn get<T: ReadTxn>(id: &str, txn: &Txn<T>, ctx: &Context) -> Handled {
    let (host, node) = find(id, txn)?;
    Ok(Reply::json(200, &view(&host, &node, ctx)))
}

/// `GET /v1/hosts/{id}/tags`: a bare array of tags.
pub(super) fn tags<T: ReadTxn>(id: &str, txn: &Txn<T>) -> Handled {
    let (_, node) = find(id, txn)?;
    Ok(Reply::json(200, &node.tags))
}

#[derive(Serialize)]
struct Created {
    host: HostView,
    registration_token: String,
}

/// `POST /v1/hosts`: a pending host, and the one-time token that registers it.
pub(super) fn create(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    // Wrenn's `type`, `team_id`, `provider` and `availability_zone` mean nothing here.
    object(req)?;
    check_mint_limit(user, req, ctx)?;
    let node_id = secret::new_node_id().map_err(internal)?;
    let node = NodeRecord {
        name: format!("host-{}", &node_id[..8]),
        node_id: node_id.clone(),
        enrolled_at: ctx.now_ms,
        ..NodeRecord::default()
    };
    let mut host = HostRecord {
        state: HostState::Pending,
        address: None,
        arch: None,
        cpu_cores: None,
        memory_mb: None,
        disk_gb: None,
        created_by: user.name.clone(),
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
        registration_hash: None,
    };
    // The token first: it is what can fail (no random bytes) before anything is written.
    let token = mint_registration(user, &node_id, &mut host, txn, ctx)?;
    txn.save_node(&node, None)?;
    audit(txn, ctx, req, &user.name, "host_created", Some(&node_id), "Wrenn host, pending registration".into())?;
    log::info!("{} created Wrenn host {node_id}", user.name);
    Ok(Reply::json(201, &Created { host: view(&host, &node, ctx), registration_token: token }))
}

/// Registration tokens count against the same hourly budget as enrolment tokens. Checked
/// before anything is written: a refusal must leave the store as it was.
fn check_mint_limit(user: &User, req: &Request, ctx: &Context) -> Result<(), Failure> {
    let limit = ctx.limits.mints_per_user;
    if let Err(wait) = ctx.limits.take(&format!("mint:{}", user.name), limit, ctx.now_ms, req.seq) {
        let what = format!("{} may mint at most {} enrolment or registration tokens an hour", user.name, limit.count);
        return Err(too_many(&what, wait).into());
    }
    Ok(())
}

/// Makes a registration token for `node_id`, replacing the host's previous one; saves the host.
fn mint_registration(
    user: &User,
    node_id: &str,
    host: &mut HostRecord,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Result<String, Failure> {
    let token = secret::new_secret(ENROLL_PREFIX).map_err(internal)?;
    let id = secret::new_id().map_err(internal)?;
    if let Some(old) = host.registration_hash.as_deref().and_then(secret::unhex32) {
        txn.delete_enroll_token(&old)?;
    }
    let hash = secret::hash(&token);
    let record = EnrollTokenRecord {
        id,
        name: Some(format!("registers Wrenn host {node_id}")),
        tags: Vec::new(),
        node_id: Some(node_id.to_owned()),
        hostname: None,
        created_by: Some(user.name.clone()),
        created_at: ctx.now_ms,
        expires_at: ctx.now_ms + REGISTRATION_MS,
        used_at: None,
        used_by: None,
    };
    txn.put_enroll_token(&hash, &record)?;
    host.registration_hash = Some(secret::hex(&hash));
    host.updated_at = ctx.now_ms;
    txn.put_host(node_id, host)?;
    Ok(token)
}

/// `POST /v1/hosts/{id}/token`: a fresh registration token. The host's JWT, if it has
/// one, is revoked with it: the host must register again.
pub(super) fn regenerate(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let (mut host, mut node) = find(id, txn)?;
    check_mint_limit(user, req, ctx)?;
    host.state = HostState::Pending;
    let token = mint_registration(user, &node.node_id, &mut host, txn, ctx)?;
    if let Some(old) = node.token_hash.take().as_deref().and_then(secret::unhex32) {
        txn.delete_agent_token(&old)?;
    }
    // Pending again, its heartbeats refused until it registers: it is not watched
    // meanwhile, and reads as never heard from, as a host never registered does (an outage
    // declared already stays, and is ended by its next heartbeat).
    let previous = node.deadline.take();
    if node.down_since.is_none() {
        (node.last_seen, node.heartbeat) = (None, None);
    }
    txn.save_node(&node, previous)?;
    let detail = "new registration token; the host's token, if any, revoked".to_owned();
    audit(txn, ctx, req, &user.name, "host_token_regenerated", Some(&node.node_id), detail)?;
    log::info!("{} regenerated the registration token of Wrenn host {}", user.name, node.node_id);
    Ok(Reply::json(201, &Created { host: view(&host, &node, ctx), registration_token: token }))
}

/// `DELETE /v1/hosts/{id}`: the host and its node, JWT and registration token.
pub(super) fn delete(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let (host, node) = find(id, txn)?;
    if let Some(old) = host.registration_hash.as_deref().and_then(secret::unhex32) {
        txn.delete_enroll_token(&old)?;
    }
    alerts::delete_node(txn, &node, &user.name, ctx.now_ms, ctx.channels)?;
    audit(txn, ctx, req, &user.name, "host_deleted", Some(&node.node_id), "Wrenn host and its token".into())?;
    log::info!("{} deleted Wrenn host {}", user.name, node.node_id);
    Ok(Reply::bytes(204, "application/json", Vec::new()))
}

/// `POST /v1/hosts/{id}/tags` with `{"tag": "…"}`.
pub(super) fn add_tag(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let Some(fields) = object(req)? else {
        return Err(ApiError::invalid(r#"send the tag as {"tag": "…"}"#).into());
    };
    let tag = fields.str("tag", 64)?;
    let (_, mut node) = find(id, txn)?;
    if !node.tags.contains(&tag) {
        let mut tags = node.tags.clone();
        tags.push(tag.clone());
        fleet::check_tags(&tags)?;
        node.tags = tags;
        node.edited_at = Some(ctx.now_ms);
        txn.save_node(&node, node.deadline)?;
        audit(txn, ctx, req, &user.name, "host_tagged", Some(&node.node_id), format!("added tag {tag:?}"))?;
    }
    Ok(Reply::bytes(204, "application/json", Vec::new()))
}

/// `DELETE /v1/hosts/{id}/tags/{tag}`.
pub(super) fn remove_tag(
    user: &User,
    id: &str,
    tag: &str,
    req: &Request,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Handled {
    let tag = tag.replace("%3A", ":").replace("%3D", "=");
    let (_, mut node) = find(id, txn)?;
    if node.tags.contains(&tag) {
        node.tags.retain(|t| *t != tag);
        node.edited_at = Some(ctx.now_ms);
        txn.save_node(&node, node.deadline)?;
        audit(txn, ctx, req, &user.name, "host_untagged", Some(&node.node_id), format!("removed tag {tag:?}"))?;
    }
    Ok(Reply::bytes(204, "application/json", Vec::new()))
}

#[derive(Serialize)]
struct Registered {
    host: HostView,
    token: String,
}

/// `POST /v1/hosts/register {token, arch, cpu_cores, memory_mb, disk_gb, address}`:
/// trades a registration token for a host JWT. No caller check: the token is the credential.
pub(super) fn register(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let fields = Fields::parse(&req.body)?;
    let token = fields.str("token", 256)?;
    let address = fields.str("address", 253)?;
    if address.trim().is_empty() {
        return Err(hearth_wire::WireError::field("address", "must be the host's ip:port, not empty").into());
    }
    let arch = fields.opt_str("arch", 32)?.filter(|a| !a.is_empty());
    let (cpu_cores, memory_mb, disk_gb) =
        (fields.opt_u64("cpu_cores")?, fields.opt_u64("memory_mb")?, fields.opt_u64("disk_gb")?);
    let token_hash = secret::hash(&token);
    let from = req.client_text();
    let refuse = |error: ApiError| -> Handled {
        log::warn!("Wrenn host registration from {from} refused: {}", error.code);
        Err(error.into())
    };
    let not_valid = || {
        ApiError::unauthorized("the registration token is not valid; create the host again, or regenerate its token")
    };
    let Some(mut record) = txn.enroll_token(&token_hash)? else { return refuse(not_valid()) };
    let Some(node_id) = record.node_id.clone() else { return refuse(not_valid()) };
    let (Some(mut host), Some(mut node)) = (txn.host(&node_id)?, txn.node(&node_id)?) else {
        return refuse(not_valid());
    };
    if record.used_by.is_some() {
        let message = "this registration token was already used; regenerate it with POST /v1/hosts/{id}/token";
        return refuse(ApiError::new(410, "token_used", message));
    }
    if record.expires_at <= ctx.now_ms {
        let message =
            "this registration token has expired (they last an hour); regenerate it with POST /v1/hosts/{id}/token";
        return refuse(ApiError::new(410, "token_expired", message));
    }
    let key = signing_key(txn)?;
    let now_secs = ctx.now_ms.div_euclid(1000);
    let jti = secret::new_id().map_err(internal)?;
    let host_token = jwt::sign(&key, &Claims::host(&node_id, now_secs, HOST_TOKEN_SECS, jti));
    let host_hash = secret::hash(&host_token);
    if let Some(old) = node.token_hash.as_deref().and_then(secret::unhex32) {
        txn.delete_agent_token(&old)?;
    }
    txn.put_agent_token(&host_hash, &node_id)?;
    node.token_hash = Some(secret::hex(&host_hash));
    node.enrolled_with.arch.clone_from(&arch);
    node.enrolled_with.cpu_cores = cpu_cores;
    node.enrolled_with.memory_mb = memory_mb;
    node.enrolled_with.disk_gb = disk_gb;
    if node.hostname.is_empty() {
        node.hostname = address_host(&address).to_owned();
    }
    let previous = node.deadline;
    // The agent that registers is alive: it is watched from now, with a grace for its
    // first heartbeat, and declared offline if none comes, in every view and channel
    // alike. (An outage declared before its token was regenerated stays.)
    if node.down_since.is_none() {
        node.last_seen = Some(ctx.now_ms);
        node.deadline = Some(ctx.policy.offline_at(&node, ctx.now_ms));
    }
    txn.save_node(&node, previous)?;
    record.used_at = Some(ctx.now_ms);
    record.used_by = Some(node_id.clone());
    txn.put_enroll_token(&token_hash, &record)?;
    host = HostRecord {
        state: HostState::Registered,
        address: Some(address),
        arch,
        cpu_cores,
        memory_mb,
        disk_gb,
        registration_hash: None,
        updated_at: ctx.now_ms,
        ..host
    };
    txn.put_host(&node_id, &host)?;
    log::info!("Wrenn host {node_id} registered from {from}");
    Ok(Reply::json(201, &Registered { host: view(&host, &node, ctx), token: host_token }))
}

/// The host part of `ip:port` (or `[v6]:port`), for the node's hostname.
fn address_host(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

/// The key host JWTs are signed with, made on first use and kept in the store.
fn signing_key(txn: &mut Txn<RwTxn>) -> Result<Vec<u8>, Failure> {
    if let Some(key) = stored_key(txn)? {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(internal)?;
    txn.put_setting(setting::HOST_JWT_SECRET, &secret::hex(&key))?;
    Ok(key.to_vec())
}

fn stored_key<T: ReadTxn>(txn: &Txn<T>) -> Result<Option<Vec<u8>>, store::Error> {
    let hex: Option<String> = txn.setting(setting::HOST_JWT_SECRET)?;
    match hex {
        None => Ok(None),
        Some(hex) => secret::unhex32(&hex)
            .map(|key| Some(key.to_vec()))
            .ok_or_else(|| store::Error::Corrupt("the host token key".into())),
    }
}

/// `POST /v1/hosts/{id}/heartbeat` with `X-Host-Token`: 204, and the node is alive.
/// The JWT's signature and expiry are checked, then that the store still knows it
/// (deleting the host or regenerating its token forgets it), then that it is this host's.
pub(super) fn heartbeat(id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let unauthorized = |why: &str| -> Handled {
        let message = format!("the host token is {why}; register the host again with a fresh registration token");
        Err(ApiError::unauthorized(message).into())
    };
    let Some(token) = &req.bearer else {
        let message = "a host heartbeat needs the host token from registration, as X-Host-Token";
        return Err(ApiError::unauthorized(message).into());
    };
    let Some(key) = stored_key(txn)? else { return unauthorized("not valid") };
    let claims = match jwt::verify(&key, token, ctx.now_ms.div_euclid(1000)) {
        Ok(claims) => claims,
        Err(invalid) => {
            log::debug!("a host heartbeat from {} had a bad token: {}", req.client_text(), invalid.as_str());
            return unauthorized(if invalid == jwt::Invalid::Expired { "expired" } else { "not valid" });
        }
    };
    let Some(owner) = txn.agent_token_node(&secret::hash(token))?.filter(|owner| *owner == claims.host_id) else {
        return unauthorized("revoked");
    };
    if owner != id.to_ascii_lowercase() {
        let message = format!("this host token belongs to host {owner}, not {id}");
        return Err(ApiError::forbidden(message).into());
    }
    let Some(node) = txn.node(&owner)? else { return unauthorized("revoked") };
    let beat = Heartbeat {
        node_id: owner.clone(),
        hostname: node.hostname.clone(),
        os_profile: "wrenn".into(),
        cloudflare_ok: true,
        services_ok: true,
        // Wrenn sends no time of its own: nothing to judge its clock by (no skew).
        timestamp: String::new(),
        interval_secs: Some(HOST_INTERVAL_SECS),
        ..Heartbeat::default()
    };
    super::agents::take_beat(txn, node, beat, ctx)?;
    Ok(Reply::bytes(204, "application/json", Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::address_host;

    #[test]
    fn address_host_takes_the_host_part() {
        for (address, host) in
            [("10.0.0.5:8080", "10.0.0.5"), ("[fd00::1]:80", "fd00::1"), ("box.lan", "box.lan"), ("fd00::1", "fd00::1")]
        {
            assert_eq!(address_host(address), host, "{address}");
        }
    }
}
