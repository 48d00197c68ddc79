//! What agents call: enrolment with a one-time token, and heartbeats with the agent token.

use super::{internal, session, too_many, ApiError, Context, Failure, Handled, Reply, Request};
use crate::alerts;
use crate::liveness;
use crate::model::{EnrolledFacts, NodeRecord};
use crate::secret::{self, AGENT_PREFIX};
use crate::store::{RwTxn, Txn};
use crate::uptime;
use hearth_wire::{EnrollRequest, EnrollResponse, Heartbeat, HeartbeatAck};

/// Past this many nodes in all, no node may register by an anonymous heartbeat.
pub const MAX_ANONYMOUS_FLEET: u64 = 10_000;

const HOW_TO_ENROL: &str = "enrol this node first: mint a token with `hearth-collector token create` \
     and run `hearth-agent enroll --token TOKEN` on the node";

pub(super) fn heartbeat(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
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
    let mut node = match existing {
        Some(node) => node,
        None => {
            admit_anonymous(req, txn, ctx)?;
            log::info!("node {} ({}) registered by its first anonymous heartbeat", hb.node_id, hb.hostname);
            NodeRecord {
                node_id: hb.node_id.clone(),
                name: hb.hostname.clone(),
                enrolled_at: ctx.now_ms,
                ..NodeRecord::default()
            }
        }
    };
    let ack = HeartbeatAck { status: "ok".into(), node_id: hb.node_id.clone(), device_id: hb.node_id.clone() };
    let previous = node.deadline;
    let closed = uptime::ongoing(&node, ctx.now_ms);
    let changes = liveness::on_heartbeat(&mut node, hb, ctx.now_ms, ctx.policy);
    if let Some(span) = closed {
        alerts::record_span(txn, &node, span, ctx.now_ms)?;
    }
    alerts::record(txn, &mut node, &changes, ctx.now_ms, ctx.channels)?;
    txn.save_node(&node, previous)?;
    Ok(Reply::json(200, &ack))
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
    let node_id = match (&token.node_id, &body.node_id) {
        (Some(bound), _) => bound.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => secret::new_node_id().map_err(internal)?,
    };
    let existing = txn.node(&node_id)?;
    // An id belongs to whoever holds it: a node enrolled, or one that registered
    // anonymously. Only a token minted for that node (`--node ID`) may take it over.
    if existing.is_some() && token.node_id.is_none() {
        let message = format!(
            "node {node_id} already exists (enrolled, or registered by anonymous heartbeats); to enrol it, \
             mint a token bound to it \
             (`hearth-collector token create --node {node_id}`), or enrol without a node id"
        );
        return Err(ApiError::new(409, "node_exists", message).into());
    }
    let agent_token = secret::new_secret(AGENT_PREFIX).map_err(internal)?;
    let agent_hash = secret::hash(&agent_token);
    let mut node = existing.unwrap_or_default();
    if let Some(old) = node.token_hash.as_deref().and_then(secret::unhex32) {
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
    let previous = node.deadline;
    liveness::on_enrolled(&mut node, ctx.now_ms, ctx.policy);
    txn.save_node(&node, previous)?;
    token.used_at = Some(ctx.now_ms);
    token.used_by = Some(node_id.clone());
    txn.put_enroll_token(&token_hash, &token)?;
    log::info!("node {node_id} ({}) enrolled from {from} with token {}", node.hostname, token.id);
    Ok(Reply::json(200, &EnrollResponse { host_id: node_id.clone(), node_id, agent_token }))
}
