//! The heartbeat: the V1 node-agent fields plus Hearth's optional extensions.

use crate::fields::{Fields, WireError, MAX_STRING};
use crate::parse_rfc3339;
use miniserde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One heartbeat, as `POST /api/agent/heartbeat` carries it.
///
/// The first seven fields are the V1 contract and are always present.
/// Everything after them is optional: V1 agents never send it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Heartbeat {
    pub node_id: String,
    pub hostname: String,
    pub os_profile: String,
    pub cloudflare_ok: bool,
    pub services_ok: bool,
    /// The root path the agent checked (the V1 name is kept on the wire).
    pub vaultmesh_root: String,
    /// When the agent built the heartbeat, by the agent's clock (RFC 3339).
    pub timestamp: String,

    pub name: Option<String>,
    pub agent_version: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub kernel: Option<String>,
    pub tags: Option<Vec<String>>,
    pub ip_address: Option<String>,
    pub ip_addresses: Option<Vec<String>>,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub mem_available_mb: Option<u64>,
    pub disk_free_gb: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<Vec<f64>>,
    pub uptime_secs: Option<u64>,
    pub boot_id: Option<String>,
    /// Heartbeats sent since the agent started, counting from 1.
    pub seq: Option<u64>,
    pub interval_secs: Option<u64>,
    pub checks: Option<Vec<Check>>,
    pub state: Option<State>,
}

/// The outcome of one health check on the node.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Whether the agent is running or shutting down cleanly.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "stopping")]
    Stopping,
}

/// What the collector answers to an accepted heartbeat.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HeartbeatAck {
    pub status: String,
    pub node_id: String,
    /// The same as `node_id`, for agents that cache a device id.
    pub device_id: String,
}

/// The longest interval a heartbeat may announce: one day.
pub const MAX_INTERVAL_SECS: u64 = 86_400;

impl Heartbeat {
    /// Parses and validates a heartbeat body; the error names the first bad field.
    pub fn from_json(body: &str) -> Result<Heartbeat, WireError> {
        Heartbeat::from_fields(&Fields::parse(body)?)
    }

    /// Validates a heartbeat body already parsed as JSON.
    pub fn from_fields(f: &Fields) -> Result<Heartbeat, WireError> {
        let Some(node_id) = crate::canonical_node_id(&f.str("node_id", 36)?) else {
            return Err(WireError::field(
                "node_id",
                "must be a UUID, such as 550e8400-e29b-41d4-a716-446655440000 (or the 32 hex digits of /etc/machine-id)",
            ));
        };
        let timestamp = f.str("timestamp", 64)?;
        if parse_rfc3339(&timestamp).is_none() {
            return Err(WireError::field("timestamp", "must be an RFC 3339 time, such as 2026-11-22T10:00:00Z"));
        }
        let interval_secs = f.opt_u64("interval_secs")?;
        if interval_secs.is_some_and(|s| s == 0 || s > MAX_INTERVAL_SECS) {
            return Err(WireError::field("interval_secs", format!("must be between 1 and {MAX_INTERVAL_SECS}")));
        }
        let state = match f.opt_str("state", 16)?.as_deref() {
            None => None,
            Some("running") => Some(State::Running),
            Some("stopping") => Some(State::Stopping),
            Some(_) => return Err(WireError::field("state", "must be \"running\" or \"stopping\"")),
        };
        let ip_address = f.opt_str("ip_address", 64)?;
        if let Some(address) = &ip_address {
            check_ip("ip_address", address)?;
        }
        let ip_addresses = f.opt_str_list("ip_addresses", 64)?;
        for address in ip_addresses.iter().flatten() {
            check_ip("ip_addresses", address)?;
        }
        let checks = f
            .opt_object_list("checks")?
            .map(|list| list.iter().map(Check::from_fields).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .map(one_per_name);
        Ok(Heartbeat {
            node_id,
            hostname: f.str("hostname", 253)?,
            os_profile: f.str("os_profile", 64)?,
            cloudflare_ok: f.bool("cloudflare_ok")?,
            services_ok: f.bool("services_ok")?,
            vaultmesh_root: f.str("vaultmesh_root", 4096)?,
            timestamp,
            name: f.opt_str("name", 128)?,
            agent_version: f.opt_str("agent_version", 64)?,
            os: f.opt_str("os", 64)?,
            arch: f.opt_str("arch", 32)?,
            kernel: f.opt_str("kernel", 128)?,
            tags: f.opt_str_list("tags", 64)?,
            ip_address,
            ip_addresses,
            cpu_cores: f.opt_u64("cpu_cores")?,
            memory_mb: f.opt_u64("memory_mb")?,
            disk_gb: f.opt_u64("disk_gb")?,
            mem_available_mb: f.opt_u64("mem_available_mb")?,
            disk_free_gb: f.opt_u64("disk_free_gb")?,
            load: f.opt_f64_list("load", 3)?,
            uptime_secs: f.opt_u64("uptime_secs")?,
            boot_id: f.opt_str("boot_id", 64)?,
            seq: f.opt_u64("seq")?,
            interval_secs,
            checks,
            state,
        })
    }

    /// Whether the agent said it is shutting down cleanly.
    pub fn is_stopping(&self) -> bool {
        self.state == Some(State::Stopping)
    }
}

impl Check {
    fn from_fields(f: &Fields) -> Result<Check, WireError> {
        let in_checks = |e: WireError| match e {
            WireError::InvalidField { field, reason } => WireError::field(&format!("checks[].{field}"), reason),
            other => other,
        };
        Ok(Check {
            name: f.str("name", 128).map_err(in_checks)?,
            ok: f.bool("ok").map_err(in_checks)?,
            detail: f.opt_str("detail", MAX_STRING * 2).map_err(in_checks)?.unwrap_or_default(),
        })
    }
}

/// One check per name, in the order first given: a name given twice (a path listed twice,
/// say) is one check, failing if any copy fails. Two would be one series twice in the
/// collector's `/metrics/nodes`, which Prometheus drops.
fn one_per_name(checks: Vec<Check>) -> Vec<Check> {
    let mut kept: Vec<Check> = Vec::with_capacity(checks.len());
    for check in checks {
        match kept.iter_mut().find(|k| k.name == check.name) {
            Some(same) if same.ok && !check.ok => *same = check,
            Some(_) => {}
            None => kept.push(check),
        }
    }
    kept
}

pub(crate) fn check_ip(field: &str, address: &str) -> Result<(), WireError> {
    match address.parse::<IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(WireError::field(field, format!("holds {address:?}, which is not an IP address"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"node_id":"550e8400-e29b-41d4-a716-446655440000","hostname":"pi","os_profile":"ArchVault",
        "cloudflare_ok":true,"services_ok":false,"vaultmesh_root":"/var/lib/vaultmesh","timestamp":"2026-11-22T10:00:00Z"}"#;

    #[test]
    fn a_check_named_twice_is_one_check_failing_if_either_copy_fails() {
        let checks = r#","checks":[{"name":"/","ok":true},{"name":"b","ok":true},{"name":"/","ok":false,"detail":"gone"},
            {"name":"/","ok":true}]}"#;
        let hb = Heartbeat::from_json(&format!("{}{checks}", &V1[..V1.len() - 1])).unwrap();
        let got: Vec<(&str, bool, &str)> =
            hb.checks.iter().flatten().map(|c| (c.name.as_str(), c.ok, c.detail.as_str())).collect();
        assert_eq!(got, [("/", false, "gone"), ("b", true, "")]);
    }

    #[test]
    fn v1_heartbeat_parses_with_exactly_seven_fields() {
        let hb = Heartbeat::from_json(V1).unwrap();
        assert_eq!(hb.hostname, "pi");
        assert!(hb.cloudflare_ok && !hb.services_ok);
        assert_eq!(hb.seq, None);
        assert!(!hb.is_stopping());
    }

    #[test]
    fn each_missing_v1_field_is_named() {
        for field in
            ["node_id", "hostname", "os_profile", "cloudflare_ok", "services_ok", "vaultmesh_root", "timestamp"]
        {
            let mut value: miniserde::json::Value = miniserde::json::from_str(V1).unwrap();
            if let miniserde::json::Value::Object(o) = &mut value {
                o.remove(field);
            }
            let err = Heartbeat::from_json(&miniserde::json::to_string(&value)).unwrap_err();
            assert_eq!(err.to_string(), format!("field `{field}` is required"));
        }
    }

    #[test]
    fn malformed_fields_are_named() {
        let cases = [
            (r#""node_id":"550e8400-e29b-41d4-a716-446655440000""#, r#""node_id":"node-1""#, "node_id"),
            (r#""timestamp":"2026-11-22T10:00:00Z""#, r#""timestamp":"yesterday""#, "timestamp"),
            (r#""cloudflare_ok":true"#, r#""cloudflare_ok":"true""#, "cloudflare_ok"),
            (r#""hostname":"pi""#, r#""hostname":"pi","load":[1,2]"#, "load"),
            (r#""hostname":"pi""#, r#""hostname":"pi","state":"gone""#, "state"),
            (r#""hostname":"pi""#, r#""hostname":"pi","ip_address":"not-an-ip""#, "ip_address"),
            (r#""hostname":"pi""#, r#""hostname":"pi","checks":[{"name":"x"}]"#, "checks[].ok"),
            (r#""hostname":"pi""#, r#""hostname":"pi","interval_secs":0"#, "interval_secs"),
        ];
        for (from, to, field) in cases {
            let body = V1.replace(from, to);
            match Heartbeat::from_json(&body) {
                Err(WireError::InvalidField { field: got, .. }) => assert_eq!(got, field, "{body}"),
                other => panic!("expected an error naming {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_extensions_round_trip() {
        let body = V1.replace(
            r#""hostname":"pi""#,
            r#""hostname":"pi","future":{"x":1},"seq":7,"load":[0.5,0.25,0],"state":"stopping",
               "checks":[{"name":"cloudflared","ok":false,"detail":"inactive"}],"ip_addresses":["10.0.0.2","fe80::1"]"#,
        );
        let hb = Heartbeat::from_json(&body).unwrap();
        assert_eq!(hb.seq, Some(7));
        assert_eq!(hb.load, Some(vec![0.5, 0.25, 0.0]));
        assert!(hb.is_stopping());
        let again = Heartbeat::from_json(&miniserde::json::to_string(&hb)).unwrap();
        assert_eq!(again, hb);
    }
}
