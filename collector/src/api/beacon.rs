//! Beacon's master-agent heartbeat: a device named by `device_name`, authenticated only by
//! the fleet key it shares with the rest of its fleet.
//!
//! Such a node is weaker than an enrolled one, so the key may do little: create the node
//! of a device name it has not sent before (one use of the key), and update the nodes it
//! created. It reads nothing (`api::authenticate` refuses it on every route for people),
//! and once revoked, its heartbeats get 401.

use super::fleetkeys;
use super::{internal, ApiError, Context, Handled, Reply, Request};
use crate::model::NodeRecord;
use crate::secret;
use crate::store::{RwTxn, Txn};
use hearth_wire::{BeaconAck, BeaconHeartbeat, Heartbeat, WireError};

pub(super) fn heartbeat(
    req: &Request,
    beat: Result<BeaconHeartbeat, WireError>,
    txn: &mut Txn<RwTxn>,
    ctx: &Context,
) -> Handled {
    // Authenticate before looking at the body, so strangers learn nothing from validation errors.
    let Some(raw) = req.bearer.as_deref() else {
        let message = "a Beacon heartbeat needs a fleet key, as `Authorization: Bearer usr_…` or `X-API-Key: usr_…`; \
             mint one with `hearth-collector fleetkey create --name NAME`";
        return Err(ApiError::new(401, "unauthorized", message).into());
    };
    if !raw.starts_with(crate::secret::FLEET_PREFIX) {
        let message = "a Beacon heartbeat (with `device_name`, without `node_id`) needs a fleet key (`usr_…`); \
             an agent token sends Hearth's heartbeat, which names its `node_id`";
        return Err(ApiError::new(401, "unauthorized", message).into());
    }
    let mut admitted = fleetkeys::alive(raw, txn)?;
    let beat = beat?;
    let key_id = admitted.key.id.clone();
    // A device renamed since its last beat, sending back the id it was given: its node, if
    // this key made that node, under its new name too.
    let known = match txn.fleet_device(&key_id, &beat.device_name)? {
        Some(id) => Some(id),
        None => match beat.device_id.as_deref() {
            Some(id) if txn.node(id)?.is_some_and(|n| n.fleet_key.as_deref() == Some(key_id.as_str())) => {
                txn.put_fleet_device(&key_id, &beat.device_name, id)?;
                Some(id.to_owned())
            }
            _ => None,
        },
    };
    let (node_id, existing) = match known {
        Some(id) => {
            let node = txn.node(&id)?;
            (id, node)
        }
        None => {
            fleetkeys::take_use(&mut admitted, txn, ctx)?;
            let id = secret::new_node_id().map_err(internal)?;
            txn.put_fleet_device(&key_id, &beat.device_name, &id)?;
            log::info!("Beacon device {:?} registered as node {id} with fleet key {key_id}", beat.device_name);
            (id, None)
        }
    };
    let mut node = match existing {
        // Enrolled since (a token bound to this id): the node has its own token now.
        Some(node) if node.fleet_key.as_deref() != Some(key_id.as_str()) || node.token_hash.is_some() => {
            let message = format!("node {node_id} now authenticates with its own agent token, not this fleet key");
            return Err(ApiError::new(403, "forbidden", message).into());
        }
        Some(node) => node,
        // New, or deleted by an operator and heard from again: the device keeps its id.
        None => NodeRecord {
            node_id: node_id.clone(),
            name: beat.device_name.clone(),
            tags: admitted.key.tags.clone(),
            enrolled_at: ctx.now_ms,
            fleet_key: Some(key_id),
            ..NodeRecord::default()
        },
    };
    node.metadata = beat.metadata.as_ref().map(miniserde::json::to_string);
    let hb = Heartbeat {
        node_id: node_id.clone(),
        hostname: if beat.hostname.is_empty() { beat.device_name.clone() } else { beat.hostname },
        // Beacon reports no checks: these stand for "nothing failing", and are not shown.
        os_profile: "beacon".into(),
        cloudflare_ok: true,
        services_ok: true,
        vaultmesh_root: String::new(),
        // Beacon sends no time of its own: nothing to judge its clock by (no skew).
        timestamp: String::new(),
        name: Some(beat.device_name),
        agent_version: beat.agent_version,
        os: beat.os,
        arch: beat.arch,
        tags: beat.tags,
        ip_address: beat.ip_address,
        ..Heartbeat::default()
    };
    super::agents::take_beat(txn, node, hb, ctx)?;
    Ok(Reply::json(200, &BeaconAck { device_id: node_id.clone(), status: "ok".into(), node_id }))
}
