//! Fleet keys: one key that lets many nodes in. People mint, list and revoke them; agents
//! enrol with one (each node then gets its own agent token), and Beacon agents send
//! heartbeats with one (`beacon.rs`). Here too is the rule for letting one more node in.

use super::fleet::{check_label, check_tags, parse_known_body, server_url, sh_quote};
use super::{audit, internal, too_many, ApiError, Context, Handled, Reply, Request, User};
use crate::model::{FleetKeyRecord, FleetKeyState};
use crate::secret::{self, FLEET_PREFIX};
use crate::store::{ReadTxn, RwTxn, Txn};
use hearth_wire::format_rfc3339;
use miniserde::{Deserialize, Serialize};

/// Nodes a fleet key lets in when its minter does not say: a Pi fleet fits, a flood does not.
pub const DEFAULT_MAX_USES: u64 = 1000;
/// The most nodes one fleet key may let in.
pub const MAX_USES: u64 = 10_000;
/// How long a fleet key lets new nodes in when its minter does not say: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 30 * 86_400;
/// The longest a fleet key may let new nodes in: a year.
pub const MAX_TTL_SECS: u64 = 365 * 86_400;

const HOW_TO_GET_ONE: &str = "mint one with `hearth-collector fleetkey create --name NAME` or in the dashboard";

/// A fleet key that may let one more node in, and the SHA-256 it is stored under.
pub(super) struct Admitted {
    pub hash: [u8; 32],
    pub key: FleetKeyRecord,
}

/// The fleet key `raw` names, if it is alive (not revoked): 401 otherwise. Nodes already
/// in keep working with an expired or used-up key.
pub(super) fn alive<T: ReadTxn>(raw: &str, txn: &Txn<T>) -> Result<Admitted, super::Failure> {
    let hash = secret::hash(raw);
    let Some(key) = txn.fleet_key(&hash)? else {
        let message =
            format!("the fleet key is not recognised (mistyped, or from another collector); {HOW_TO_GET_ONE}");
        return Err(ApiError::new(401, "unauthorized", message).into());
    };
    if key.revoked_at.is_some() {
        let message = format!("fleet key {} ({}) was revoked; {HOW_TO_GET_ONE}", key.id, key.name);
        return Err(ApiError::new(401, "key_revoked", message).into());
    }
    Ok(Admitted { hash, key })
}

/// Counts one more node against the key, in the caller's transaction: 410 if the key has
/// expired or every use is taken. The request thread runs writes one at a time, so the
/// count is exact however many nodes ask at once.
pub(super) fn take_use(admitted: &mut Admitted, txn: &mut Txn<RwTxn>, ctx: &Context) -> Result<(), super::Failure> {
    let key = &mut admitted.key;
    match key.state(ctx.now_ms) {
        FleetKeyState::Valid => {}
        FleetKeyState::Expired => {
            let message =
                format!("fleet key {} ({}) has expired and lets no new node in; {HOW_TO_GET_ONE}", key.id, key.name);
            return Err(ApiError::new(410, "key_expired", message).into());
        }
        FleetKeyState::UsedUp => {
            let message = format!(
                "fleet key {} ({}) has let in all the {} nodes it may; mint another, or one with a larger --max-uses",
                key.id, key.name, key.max_uses
            );
            return Err(ApiError::new(410, "key_used_up", message).into());
        }
        // `alive` refuses these already; refused again here rather than trusted.
        FleetKeyState::Revoked => {
            let message = format!("fleet key {} ({}) was revoked; {HOW_TO_GET_ONE}", key.id, key.name);
            return Err(ApiError::new(401, "key_revoked", message).into());
        }
    }
    key.uses += 1;
    txn.put_fleet_key(&admitted.hash, key)?;
    Ok(())
}

/// `POST /api/fleet-keys`.
#[derive(Deserialize, Debug, Default)]
struct KeyRequest {
    name: Option<String>,
    tags: Option<Vec<String>>,
    max_uses: Option<u64>,
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct MintedKey {
    /// The raw key: in this answer and nowhere else.
    key: String,
    id: String,
    name: String,
    tags: Vec<String>,
    max_uses: u64,
    expires_at: Option<String>,
    /// For hosts that run hearth-agent: installs, enrols with the key, starts.
    install_command: String,
    /// For hosts that run Beacon.
    beacon_login: String,
}

pub(super) fn mint(user: &User, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let shape = r#"{"name": "…", "tags": ["…"], "max_uses": 50, "ttl_secs": 2592000}"#;
    let asked: KeyRequest = parse_known_body(req, shape, &["name", "tags", "max_uses", "ttl_secs"])?;
    let limit = ctx.limits.mints_per_user;
    if let Err(wait) = ctx.limits.take(&format!("mint:{}", user.name), limit, ctx.now_ms, req.seq) {
        let what = format!("{} may mint at most {} keys and tokens an hour", user.name, limit.count);
        return Err(too_many(&what, wait).into());
    }
    let Some(name) = asked.name else {
        return Err(ApiError::invalid("a fleet key needs a name, such as {\"name\": \"pi-fleet\"}").into());
    };
    check_label("name", &name)?;
    let tags = asked.tags.unwrap_or_default();
    check_tags(&tags)?;
    let max_uses = asked.max_uses.unwrap_or(DEFAULT_MAX_USES);
    if !(1..=MAX_USES).contains(&max_uses) {
        return Err(ApiError::invalid(format!("max_uses must be from 1 to {MAX_USES}, not {max_uses}")).into());
    }
    let ttl = asked.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(60..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(format!("ttl_secs must be from 60 to {MAX_TTL_SECS}, not {ttl}")).into());
    }
    let raw = secret::new_secret(FLEET_PREFIX).map_err(internal)?;
    let record = FleetKeyRecord {
        id: secret::new_id().map_err(internal)?,
        name,
        tags,
        max_uses,
        uses: 0,
        created_by: user.name.clone(),
        created_at: ctx.now_ms,
        expires_at: Some(ctx.now_ms + ttl as i64 * 1000),
        revoked_at: None,
    };
    txn.put_fleet_key(&secret::hash(&raw), &record)?;
    let detail = format!("fleet key {:?}, up to {max_uses} nodes, new nodes for {ttl} s", record.name);
    audit(txn, ctx, req, &user.name, "fleet_key_minted", Some(&record.id), detail)?;
    log::info!("{} minted fleet key {}", user.name, record.id);
    let server = server_url(req, ctx);
    let (q_server, q_key) = (sh_quote(&server), sh_quote(&raw));
    let minted = MintedKey {
        install_command: format!(
            "curl -fsSL {q_server}/install.sh | sudo HEARTH_SERVER={q_server} HEARTH_TOKEN={q_key} sh"
        ),
        beacon_login: format!("beacon cloud login --api-key {q_key} --name \"$(hostname)\""),
        key: raw,
        id: record.id,
        name: record.name,
        tags: record.tags,
        max_uses,
        expires_at: record.expires_at.map(format_rfc3339),
    };
    Ok(Reply::json(201, &minted))
}

#[derive(Serialize)]
struct KeyList {
    keys: Vec<KeyView>,
}

/// A fleet key as listings show it: never its raw value.
#[derive(Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub state: FleetKeyState,
    pub tags: Vec<String>,
    pub uses: u64,
    pub max_uses: u64,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl KeyView {
    pub fn of(key: FleetKeyRecord, now_ms: i64) -> KeyView {
        KeyView {
            state: key.state(now_ms),
            created_at: format_rfc3339(key.created_at),
            expires_at: key.expires_at.map(format_rfc3339),
            revoked_at: key.revoked_at.map(format_rfc3339),
            id: key.id,
            name: key.name,
            tags: key.tags,
            uses: key.uses,
            max_uses: key.max_uses,
            created_by: key.created_by,
        }
    }
}

pub(super) fn list<T: ReadTxn>(txn: &Txn<T>, ctx: &Context) -> Handled {
    let mut records: Vec<FleetKeyRecord> = txn.fleet_keys()?.into_iter().map(|(_, k)| k).collect();
    records.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let keys = records.into_iter().map(|k| KeyView::of(k, ctx.now_ms)).collect();
    Ok(Reply::json(200, &KeyList { keys }))
}

pub(super) fn revoke(user: &User, id: &str, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let Some((hash, mut key)) = txn.fleet_keys()?.into_iter().find(|(_, k)| k.id == id) else {
        return Err(ApiError::not_found(format!("no fleet key has the id {id}; see GET /api/fleet-keys")).into());
    };
    if key.revoked_at.is_none() {
        key.revoked_at = Some(ctx.now_ms);
        txn.put_fleet_key(&hash, &key)?;
        let detail = format!("fleet key {:?}; nodes that beat with it now get 401", key.name);
        audit(txn, ctx, req, &user.name, "fleet_key_revoked", Some(id), detail)?;
        log::info!("{} revoked fleet key {id}", user.name);
    }
    Ok(Reply::json(200, &KeyView::of(key, ctx.now_ms)))
}
