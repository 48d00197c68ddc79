//! Beacon's master-agent heartbeat: the payload a Beacon agent posts to
//! `/agent/heartbeat` (or `/api/agent/heartbeat`) with its API key, and the answer it reads.

use crate::fields::{Fields, WireError};
use miniserde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most entries `metadata` may hold.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// The longest a `metadata` key may be, in bytes.
pub const MAX_METADATA_KEY: usize = 64;
/// The longest a `metadata` value may be, in bytes.
pub const MAX_METADATA_VALUE: usize = 256;
/// The longest a `device_name` may be, in bytes: it becomes the node's name.
pub const MAX_DEVICE_NAME: usize = 128;

/// One Beacon heartbeat. Beacon sends every field; all but a name are optional here, so a
/// device that leaves one out still reports.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct BeaconHeartbeat {
    pub hostname: String,
    pub ip_address: Option<String>,
    pub tags: Option<Vec<String>>,
    pub agent_version: Option<String>,
    /// Which device of the key this is; `hostname` when empty or absent.
    pub device_name: String,
    pub os: Option<String>,
    pub arch: Option<String>,
    /// Free-form facts; scalar values are kept as text.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The id an earlier answer gave this device, if the agent sends it back (Beacon caches
    /// it): a device renamed since keeps its node.
    pub device_id: Option<String>,
}

/// What the collector answers to a Beacon heartbeat: Beacon caches `device_id`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BeaconAck {
    pub device_id: String,
    pub status: String,
    /// The same as `device_id`, in Hearth's name.
    pub node_id: String,
}

impl BeaconHeartbeat {
    /// Whether a parsed body looks like a Beacon heartbeat rather than a Hearth (V1) one: it
    /// has a `device_name` and no `node_id`.
    pub fn is_beacon_fields(f: &Fields) -> bool {
        f.has("device_name") && !f.has("node_id")
    }

    /// Parses and validates a Beacon heartbeat; the error names the first bad field.
    pub fn from_json(body: &str) -> Result<BeaconHeartbeat, WireError> {
        BeaconHeartbeat::from_fields(&Fields::parse(body)?)
    }

    /// Validates a Beacon heartbeat already parsed as JSON.
    pub fn from_fields(f: &Fields) -> Result<BeaconHeartbeat, WireError> {
        let hostname = f.opt_str("hostname", 253)?.unwrap_or_default();
        let device_name = f.opt_str("device_name", MAX_DEVICE_NAME)?.filter(|n| !n.trim().is_empty());
        let device_name = match device_name {
            Some(name) => name.trim().to_owned(),
            None if !hostname.trim().is_empty() => hostname.trim().to_owned(),
            None => return Err(WireError::field("device_name", "is required (or a hostname to name the device by)")),
        };
        // Beacon sends "unknown" when it finds no route out (a LAN with no default route),
        // and a link-local address with its zone (`fe80::1%eth0`): neither may cost the
        // device its heartbeat. What is not an address is left out; a zone is dropped.
        let ip_address = f
            .opt_str("ip_address", 64)?
            .map(|a| a.split('%').next().unwrap_or_default().to_owned())
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok());
        Ok(BeaconHeartbeat {
            hostname,
            ip_address,
            tags: f.opt_str_list("tags", 64)?,
            agent_version: f.opt_str("agent_version", 64)?,
            device_name,
            os: f.opt_str("os", 64)?,
            arch: f.opt_str("arch", 32)?,
            metadata: f.opt_scalar_map("metadata", MAX_METADATA_ENTRIES, MAX_METADATA_KEY, MAX_METADATA_VALUE)?,
            // Beacon's config starts with `device_id: ""`: empty, or not a UUID, is no id.
            device_id: f.opt_str("device_id", 64)?.filter(|id| crate::is_uuid(id)).map(|id| id.to_ascii_lowercase()),
        })
    }
}

/// A Beacon heartbeat exactly as Beacon's document shows it, byte for byte: what the tests
/// send, so that every one of them checks the same real payload.
pub const BEACON_EXAMPLE: &str = r#"{
  "hostname": "my-server",
  "ip_address": "192.168.1.100",
  "tags": ["beacon-master"],
  "agent_version": "1.0.0",
  "device_name": "my-homelab-server",
  "os": "linux",
  "arch": "amd64",
  "metadata": {
    "role": "beacon-master"
  }
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn is_beacon(body: &str) -> bool {
        BeaconHeartbeat::is_beacon_fields(&Fields::parse(body).unwrap())
    }

    #[test]
    fn the_seed_payload_reads_whole() {
        assert!(is_beacon(BEACON_EXAMPLE));
        let hb = BeaconHeartbeat::from_json(BEACON_EXAMPLE).unwrap();
        assert_eq!(hb.device_name, "my-homelab-server");
        assert_eq!(hb.hostname, "my-server");
        assert_eq!(hb.ip_address.as_deref(), Some("192.168.1.100"));
        assert_eq!(hb.tags, Some(vec!["beacon-master".to_owned()]));
        assert_eq!((hb.os.as_deref(), hb.arch.as_deref()), (Some("linux"), Some("amd64")));
        assert_eq!(hb.metadata.unwrap().get("role").map(String::as_str), Some("beacon-master"));
    }

    /// Beacon says "unknown" when it cannot find its address: the heartbeat still counts.
    #[test]
    fn an_address_beacon_could_not_find_is_left_out_not_refused() {
        let address = |value: &str| {
            let body = format!(r#"{{"device_name":"d","ip_address":"{value}"}}"#);
            BeaconHeartbeat::from_json(&body).unwrap().ip_address
        };
        assert_eq!(address("unknown"), None);
        assert_eq!(address(""), None);
        assert_eq!(address("fe80::1%eth0").as_deref(), Some("fe80::1"));
        assert_eq!(address("10.0.0.7").as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn v1_bodies_are_not_beacon_ones() {
        assert!(!is_beacon(r#"{"node_id":"x","device_name":"d"}"#));
        assert!(!is_beacon(r#"{"hostname":"h"}"#));
    }

    #[test]
    fn hostile_metadata_and_names_are_bounded() {
        let many: Vec<String> = (0..33).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let body = format!(r#"{{"device_name":"d","metadata":{{{}}}}}"#, many.join(","));
        assert!(BeaconHeartbeat::from_json(&body).unwrap_err().to_string().contains("metadata"));
        let long = format!(r#"{{"device_name":"d","metadata":{{"k":"{}"}}}}"#, "x".repeat(257));
        assert!(BeaconHeartbeat::from_json(&long).is_err());
        let nested = r#"{"device_name":"d","metadata":{"k":{"deep":1}}}"#;
        assert!(BeaconHeartbeat::from_json(nested).is_err());
        let scalars = r#"{"device_name":"d","metadata":{"n":3,"b":true,"z":null}}"#;
        let map = BeaconHeartbeat::from_json(scalars).unwrap().metadata.unwrap();
        assert_eq!((map["n"].as_str(), map["b"].as_str(), map.get("z")), ("3", "true", None));
        let odd = BeaconHeartbeat::from_json("{\"device_name\":\"pi\\u0007\\u202e-1\"}").unwrap();
        assert_eq!(odd.device_name, "pi -1");
        let too_long = format!(r#"{{"device_name":"{}"}}"#, "d".repeat(MAX_DEVICE_NAME + 1));
        assert!(BeaconHeartbeat::from_json(&too_long).is_err());
        assert!(BeaconHeartbeat::from_json(r#"{"device_name":"  "}"#).is_err());
        assert_eq!(BeaconHeartbeat::from_json(r#"{"device_name":"","hostname":"h"}"#).unwrap().device_name, "h");
    }
}
