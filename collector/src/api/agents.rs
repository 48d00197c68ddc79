//! What agents call: enrolment with a one-time token or a fleet key, and heartbeats with
//! the agent token (Beacon's heartbeats, with a fleet key, are `beacon.rs`'s).

use super::{fleetkeys, internal, session, too_many, ApiError, Context, Failure, Handled, Reply, Request};
use crate::alerts;
use crate::liveness;
use crate::model::{EnrolledFacts, NodeRecord};
use crate::secret::{self, AGENT_PREFIX, FLEET_PREFIX};
use crate::store::{self, RwTxn, Txn};
use crate::uptime;
use hearth_wire::{EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck, WireError};

/// Past this many nodes in all, no node may register by an anonymous heartbeat.
pub const MAX_ANONYMOUS_FLEET: u64 = 10_000;

const HOW_TO_ENROL: &str = "enrol this node first: mint a token with `hearth-collector token create` \
     and run `hearth-agent enroll --token TOKEN` on the node";

pub(super) fn heartbeat(
    req: &Request,
    beat: Result<Heartbeat, WireError>,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Handled {
    // Authenticate before looking at the body, so strangers learn nothing from validation errors.
    let token_node = match &req.bearer {
        Some(token) if token.starts_with(FLEET_PREFIX) => {
            let message = "a fleet key sends Beacon heartbeats (with `device_name`, without `node_id`), or enrols \
                 a node for its own agent token: `hearth-agent login --api-key KEY`";
            return Err(ApiError::unauthorized(message).into());
        }
        Some(token) if crate::jwt::looks_like(token) => {
            let message = "a Wrenn host token is for POST /v1/hosts/{id}/heartbeat, not for Hearth's heartbeats";
            return Err(ApiError::unauthorized(message).into());
        }
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
    let hb = beat?;
    let existing = txn.node(&hb.node_id)?;
    match (&token_node, &existing) {
        (Some(owner), _) if *owner != hb.node_id => {
            let message = format!("this agent token belongs to node {owner}, not {}", hb.node_id);
            return Err(ApiError::forbidden(message).into());
        }
        (None, Some(node)) if node.fleet_key.is_some() && node.token_hash.is_none() => {
            let message = format!("node {} is a Beacon device; its heartbeats must carry its fleet key", hb.node_id);
            return Err(ApiError::unauthorized(message).into());
        }
        (None, Some(node)) if node.token_hash.is_some() => {
            let message = format!("node {} is enrolled, so its heartbeats must carry its agent token", hb.node_id);
            return Err(ApiError::unauthorized(message).into());
        }
        _ => {}
    }
    let node = match existing {
        Some(node) => node,
        None => {
            admit_anonymous(req, txn, ctx)?;
            log::info!("node {} ({}) registered by its first anonymous heartbeat", hb.node_id, hb.hostname);
            NodeRecord {
                node_id: hb.node_id.clone(),
                name: name_of(&hb.hostname, &hb.node_id),
                enrolled_at: ctx.now_ms,
                ..NodeRecord::default()
            }
        }
    };
    let ack = HeartbeatAck { status: "ok".into(), node_id: hb.node_id.clone(), device_id: hb.node_id.clone() };
    take_beat(txn, node, hb, ctx)?;
    Ok(Reply::json(200, &ack))
}

/// Takes in a heartbeat of `node`, whichever route it came by (V1 and Hearth agents,
/// Beacon's, Wrenn's): closes its outage in the uptime log, records what changed (events,
/// alerts, held or not) and saves it.
pub(super) fn take_beat(
    txn: &mut Txn<RwTxn>,
    mut node: NodeRecord,
    hb: Heartbeat,
    ctx: &Context,
) -> Result<NodeRecord, store::Error> {
    let previous = node.deadline;
    let closed = uptime::ongoing(&node, ctx.now_ms);
    if hb.interval_secs.is_none() {
        // The context's start, not the stored `Watching`: that holds the collector's last
        // absences, too much to parse for each heartbeat.
        liveness::learn_cadence(&mut node, &hb, ctx.now_ms, ctx.watching_since);
    }
    let changes = liveness::on_heartbeat(&mut node, hb, ctx.now_ms, ctx.policy);
    if let Some(span) = closed {
        alerts::record_span(txn, &node, span, ctx.now_ms)?;
    }
    alerts::record(txn, &mut node, &changes, ctx.now_ms, ctx.channels)?;
    txn.save_node(&node, previous)?;
    Ok(node)
}

/// Whether one more node may register by an anonymous heartbeat: a few a minute from
/// one source, and none once the fleet is [`MAX_ANONYMOUS_FLEET`] nodes.
fn admit_anonymous(req: &Request, txn: &Txn<RwTxn>, ctx: &Context) -> Result<(), Failure> {
    if txn.node_count()? >= MAX_ANONYMOUS_FLEET {
        let message = format!(
            "this collector holds {MAX_ANONYMOUS_FLEET} nodes, the most that may register without enrolling; \
             enrol this node with a token"
        );
        return Err(ApiError::new(403, "fleet_full", message).into());
    }
    let source = req.client.map_or_else(|| "local".to_owned(), session::client_key);
    let limit = ctx.limits.anonymous_per_source;
    if let Err(wait) = ctx.limits.take(&format!("anonymous:{source}"), limit, ctx.now_ms, req.seq) {
        let what = format!("at most {} new nodes a minute may register anonymously from one address", limit.count);
        return Err(too_many(&what, wait).into());
    }
    Ok(())
}

pub(super) fn enroll(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let body = EnrollRequest::from_json(&req.body)?;
    if body.token.starts_with(FLEET_PREFIX) {
        return enroll_with_fleet_key(req, body, txn, ctx);
    }
    let token_hash = secret::hash(&body.token);
    let from = req.client_text();
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
    if let Some(host) = &token.node_id {
        if txn.host(host)?.is_some() {
            let message =
                format!("this token registers Wrenn host {host}: its agent sends it to POST /v1/hosts/register");
            return refuse(ApiError::unauthorized(message));
        }
    }
    let node_id = match (&token.node_id, &body.node_id) {
        (Some(bound), _) => bound.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => secret::new_node_id().map_err(internal)?,
    };
    let existing = txn.node(&node_id)?;
    // An id belongs to whoever holds it: a node enrolled, or one that registered
    // anonymously. Only a token minted for that node (`--node ID`) may take it over, or
    // the node itself, proving it with its agent token (enrolling again: the installer's
    // HEARTH_FORCE_REENROLL).
    if existing.as_ref().is_some_and(|node| token.node_id.is_none() && !holds_agent_token(req, node)) {
        return Err(node_exists(&node_id).into());
    }
    // The name the operator gave when minting (restic-manager's mint says `hostname`),
    // else (in `enrol_node`) the machine's own.
    let name = token.name.clone().or(token.hostname.clone());
    let given = Given { name, tags: token.tags.clone(), fleet_key: None };
    let (node, reply) = enrol_node(body, node_id.clone(), existing, given, txn, ctx)?;
    token.used_at = Some(ctx.now_ms);
    token.used_by = Some(node_id.clone());
    txn.put_enroll_token(&token_hash, &token)?;
    log::info!("node {node_id} ({}) enrolled from {from} with token {}", node.hostname, token.id);
    Ok(reply)
}

/// Whether the request carries `node`'s own agent token (`Authorization: Bearer`).
fn holds_agent_token(req: &Request, node: &NodeRecord) -> bool {
    match (&req.bearer, &node.token_hash) {
        (Some(token), Some(hash)) => secret::hex(&secret::hash(token)) == *hash,
        _ => false,
    }
}

fn node_exists(node_id: &str) -> ApiError {
    let message = format!(
        "node {node_id} already exists (enrolled, or registered by anonymous heartbeats); to enrol it, \
         mint a token bound to it \
         (`hearth-collector token create --node {node_id}`), or enrol without a node id"
    );
    ApiError::new(409, "node_exists", message)
}

/// Enrolment with a fleet key: like a one-time token, but the key lets in up to its
/// `max_uses` nodes, each with an id of its own (never an existing node's).
fn enroll_with_fleet_key(req: &Request, body: EnrollRequest, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let from = req.client_text();
    let mut admitted = match fleetkeys::alive(&body.token, txn) {
        Ok(admitted) => admitted,
        Err(e) => {
            log::warn!("enrolment of {} from {from} with a fleet key refused", body.hostname);
            return Err(e);
        }
    };
    let node_id = match &body.node_id {
        Some(id) => id.clone(),
        None => secret::new_node_id().map_err(internal)?,
    };
    let existing = txn.node(&node_id)?;
    if existing.as_ref().is_some_and(|node| !holds_agent_token(req, node)) {
        return Err(node_exists(&node_id).into());
    }
    fleetkeys::take_use(&mut admitted, txn, ctx)?;
    let key = admitted.key;
    let given = Given { name: None, tags: key.tags.clone(), fleet_key: Some(key.id.clone()) };
    let (node, reply) = enrol_node(body, node_id.clone(), existing, given, txn, ctx)?;
    log::info!(
        "node {node_id} ({}) enrolled from {from} with fleet key {} ({} of {})",
        node.hostname,
        key.id,
        key.uses,
        key.max_uses
    );
    Ok(reply)
}

/// What the credential an agent enrolled with gives its node.
struct Given {
    name: Option<String>,
    tags: Vec<String>,
    fleet_key: Option<String>,
}

/// Makes (or, for a bound token, takes over) the node and its agent token.
fn enrol_node(
    body: EnrollRequest,
    node_id: String,
    existing: Option<NodeRecord>,
    given: Given,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Result<(NodeRecord, Reply), Failure> {
    let agent_token = secret::new_secret(AGENT_PREFIX).map_err(internal)?;
    let agent_hash = secret::hash(&agent_token);
    let mut node = existing.unwrap_or_default();
    if let Some(old) = node.token_hash.as_deref().and_then(secret::unhex32) {
        txn.delete_agent_token(&old)?;
    }
    // A node enrolled again with a token that gives no tags keeps those it had.
    let mut tags = if given.tags.is_empty() { std::mem::take(&mut node.tags) } else { given.tags.clone() };
    for tag in body.tags.iter().flatten() {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    node = NodeRecord {
        node_id: node_id.clone(),
        name: [body.name, given.name]
            .into_iter()
            .flatten()
            .find(|name| !name.trim().is_empty())
            .unwrap_or_else(|| name_of(&body.hostname, &node_id)),
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
        fleet_key: given.fleet_key.or(node.fleet_key.take()),
        ..node
    };
    txn.put_agent_token(&agent_hash, &node_id)?;
    let previous = node.deadline;
    liveness::on_enrolled(&mut node, ctx.now_ms, ctx.policy);
    txn.save_node(&node, previous)?;
    let reply = Reply::json(
        200,
        &EnrollResponse {
            host_id: node_id.clone(),
            node_id,
            agent_token,
            cert_pin_sha256: ctx.cert_pin.map(str::to_owned),
        },
    );
    Ok((node, reply))
}

/// A new node's name when nobody gave one: its hostname, or its id when the agent sent an
/// empty or blank one, so that no node is listed without a name.
fn name_of(hostname: &str, node_id: &str) -> String {
    if hostname.trim().is_empty() {
        node_id.to_owned()
    } else {
        hostname.to_owned()
    }
}
