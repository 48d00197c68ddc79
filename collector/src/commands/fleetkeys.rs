//! Fleet keys at the command line: `fleetkey create`, `fleetkey list`, `fleetkey revoke`.

use super::{cli_audit, now_ms, open_existing_store, open_store, random_failed, Failure};
use crate::api::{KeyView, MAX_TTL_SECS, MAX_USES};
use crate::model::FleetKeyRecord;
use crate::secret::{self, FLEET_PREFIX};
use hearth_wire::format_rfc3339;
use std::path::Path;
use std::time::Duration;

/// What `fleetkey create` was asked for.
#[derive(Debug)]
pub struct NewKey {
    pub name: String,
    pub tags: Vec<String>,
    pub max_uses: u64,
    pub ttl: Duration,
}

pub(super) fn create(data_dir: &Path, asked: NewKey) -> Result<(), Failure> {
    if !(1..=MAX_USES).contains(&asked.max_uses) {
        return Err(Failure::Config(format!("--max-uses must be from 1 to {MAX_USES}, not {}", asked.max_uses)));
    }
    if asked.ttl.as_secs() > MAX_TTL_SECS {
        return Err(Failure::Config(format!("--ttl may be at most 365d ({MAX_TTL_SECS} s)")));
    }
    let label_ok = |t: &str| !t.trim().is_empty() && t.chars().count() <= 64 && !t.chars().any(char::is_control);
    if !label_ok(&asked.name) {
        return Err(Failure::Config("--name must be 1 to 64 printable characters".into()));
    }
    let tag_ok =
        |t: &String| (1..=64).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:=".contains(c));
    if let Some(bad) = asked.tags.iter().find(|t| !tag_ok(t)) {
        return Err(Failure::Config(format!(
            "the tag {bad:?} is not allowed: use 1 to 64 letters, digits, `-`, `_`, `.`, `:` or `=`"
        )));
    }
    let store = open_store(data_dir, None)?;
    let raw = secret::new_secret(FLEET_PREFIX).map_err(random_failed)?;
    let now = now_ms();
    let record = FleetKeyRecord {
        id: secret::new_id().map_err(random_failed)?,
        name: asked.name,
        tags: asked.tags,
        max_uses: asked.max_uses,
        uses: 0,
        created_by: "cli".into(),
        created_at: now,
        expires_at: Some(now.saturating_add(i64::try_from(asked.ttl.as_millis()).unwrap_or(i64::MAX))),
        revoked_at: None,
    };
    store
        .write(|txn| {
            txn.put_fleet_key(&secret::hash(&raw), &record)?;
            let detail = format!(
                "fleet key {:?}, up to {} nodes, new nodes until {}",
                record.name,
                record.max_uses,
                format_rfc3339(record.expires_at.unwrap_or(now))
            );
            txn.put_audit(cli_audit("fleet_key_minted", &record.id, detail))
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    println!("{raw}");
    eprintln!(
        "fleet key {} lets in up to {} nodes until {}. It is shown once: keep it like a password.\n\
         hearth-agent: HEARTH_TOKEN=<key> in the env file, or `hearth-agent login --api-key <key>`;\n\
         Beacon: `beacon cloud login --api-key <key> --name NAME`",
        record.id,
        record.max_uses,
        format_rfc3339(record.expires_at.unwrap_or(now))
    );
    Ok(())
}

pub(super) fn list(data_dir: &Path) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let mut keys = store.read(|txn| txn.fleet_keys()).map_err(|e| Failure::store(data_dir, e))?;
    keys.sort_by_key(|(_, k)| std::cmp::Reverse(k.created_at));
    let now = now_ms();
    println!("{:<16}  {:<8}  {:<11}  {:<24}  NAME", "ID", "STATE", "USES", "NEW NODES UNTIL");
    for (_, key) in keys {
        let view = KeyView::of(key, now);
        let state = miniserde::json::to_string(&view.state);
        println!(
            "{:<16}  {:<8}  {:<11}  {:<24}  {}",
            view.id,
            state.trim_matches('"'),
            format!("{}/{}", view.uses, view.max_uses),
            view.expires_at.unwrap_or_else(|| "-".into()),
            view.name
        );
    }
    Ok(())
}

pub(super) fn revoke(data_dir: &Path, id: &str) -> Result<(), Failure> {
    let store = open_existing_store(data_dir)?;
    let found = store
        .write(|txn| {
            let Some((hash, mut key)) = txn.fleet_keys()?.into_iter().find(|(_, k)| k.id == id) else {
                return Ok(false);
            };
            if key.revoked_at.is_none() {
                key.revoked_at = Some(now_ms());
                txn.put_fleet_key(&hash, &key)?;
                let detail = format!("fleet key {:?}; nodes that beat with it now get 401", key.name);
                txn.put_audit(cli_audit("fleet_key_revoked", id, detail))?;
            }
            Ok(true)
        })
        .map_err(|e| Failure::store(data_dir, e))?;
    if !found {
        return Err(Failure::Failed(format!("no fleet key has the id {id}; see `hearth-collector fleetkey list`")));
    }
    println!("fleet key {id} is revoked: enrolments and Beacon heartbeats with it now get 401");
    Ok(())
}
