//! Secrets: random tokens and keys, and the SHA-256 hashes they are stored under.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Prefix of enrolment tokens (one-time, short-lived).
pub const ENROLL_PREFIX: &str = "hen_";
/// Prefix of agent tokens (one per node).
pub const AGENT_PREFIX: &str = "hag_";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "hk_";

/// A new secret: `prefix` then 256 random bits in hex.
pub fn new_secret(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// A short random id, for records that need a public name.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

pub fn new_node_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hearth_wire::uuid_v4_from_bytes(bytes))
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = new_secret(AGENT_PREFIX).unwrap();
        let b = new_secret(AGENT_PREFIX).unwrap();
        assert!(a.starts_with("hag_") && a.len() == 4 + 64, "{a}");
        assert_ne!(a, b);
        assert_eq!(hex(&hash("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
