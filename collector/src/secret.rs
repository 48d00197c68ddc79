//! Secrets: random tokens and keys, and the SHA-256 hashes they are stored under.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Prefix of enrolment tokens (one-time, short-lived).
pub const ENROLL_PREFIX: &str = "hen_";
/// Prefix of agent tokens (one per node).
pub const AGENT_PREFIX: &str = "hag_";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "hk_";
/// Prefix of fleet keys (one key, many nodes). `usr_` because Beacon's `cloud login`
/// accepts only keys that start so, and a fleet key is what a Beacon agent logs in with.
pub const FLEET_PREFIX: &str = "usr_";
/// Prefix of session cookies.
pub const SESSION_PREFIX: &str = "hs_";

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

/// A password hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, one lane, the
/// OWASP minimum), with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("cannot get random bytes: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hashed = Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?;
    Ok(hashed.to_string())
}

/// Whether `password` matches a PHC string from [`hash_password`] (its own parameters apply).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Spends the time a real verification takes, so that a login for a user who does not
/// exist cannot be told apart by how long its answer takes.
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("hearth: nobody has this password").unwrap_or_default());
    let _ = verify_password(password, phc);
}

/// The 32 bytes a 64-digit hex string spells, as [`hex`] writes them.
pub fn unhex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
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

    #[test]
    fn passwords_are_argon2id_and_salted() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horse!", &a));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn unhex_round_trips() {
        let h = hash("x");
        assert_eq!(unhex32(&hex(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
    }
}
