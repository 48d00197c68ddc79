//! Enrolment: trading a one-time token for a node identity and an agent token.

use crate::fields::{Fields, WireError};
use miniserde::{Deserialize, Serialize};

/// The body of `POST /api/agents/enroll`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EnrollRequest {
    pub token: String,
    pub hostname: String,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub agent_version: Option<String>,
    /// The id the agent already holds from `hearth-agent init`; the collector makes one if absent.
    pub node_id: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub cpu_cores: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
}

/// What the collector answers to a successful enrolment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EnrollResponse {
    pub node_id: String,
    /// The same as `node_id`, for agents that call it a host id.
    pub host_id: String,
    /// The bearer token for heartbeats. It is shown once and stored only hashed.
    pub agent_token: String,
    /// The SHA-256 of the certificate an agent should pin, if the operator configured one
    /// (`--cert-pin`); `null` otherwise. restic-manager's agents read it.
    pub cert_pin_sha256: Option<String>,
}

impl EnrollRequest {
    /// Parses and validates an enrolment body; the error names the first bad field.
    pub fn from_json(body: &str) -> Result<EnrollRequest, WireError> {
        let f = Fields::parse(body)?;
        let node_id = match f.opt_str("node_id", 36)? {
            None => None,
            Some(id) => Some(
                crate::canonical_node_id(&id)
                    .ok_or_else(|| WireError::field("node_id", "must be a UUID, or left out"))?,
            ),
        };
        Ok(EnrollRequest {
            token: f.str("token", 256)?,
            hostname: f.str("hostname", 253)?,
            os: f.opt_str("os", 64)?,
            arch: f.opt_str("arch", 32)?,
            agent_version: f.opt_str("agent_version", 64)?,
            node_id,
            name: f.opt_str("name", 128)?,
            tags: f.opt_str_list("tags", 64)?,
            cpu_cores: f.opt_u64("cpu_cores")?,
            memory_mb: f.opt_u64("memory_mb")?,
            disk_gb: f.opt_u64("disk_gb")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_invalid() {
        let req = EnrollRequest::from_json(r#"{"token":"t","hostname":"h"}"#).unwrap();
        assert_eq!(req.node_id, None);
        let err = EnrollRequest::from_json(r#"{"hostname":"h"}"#).unwrap_err();
        assert_eq!(err.to_string(), "field `token` is required");
        let err = EnrollRequest::from_json(r#"{"token":"t","hostname":"h","node_id":"x"}"#).unwrap_err();
        assert!(err.to_string().starts_with("field `node_id`"));
    }
}
