//! Host tokens for Wrenn's host agents: compact JWTs signed with HMAC-SHA-256 (HS256).
//!
//! Pure: the secret and the time are handed in. Signing makes `header.claims.signature`,
//! each part base64url without padding; [`verify`] checks the form, the algorithm, the
//! signature (in constant time, by `hmac`), the token's kind and its expiry, and only then
//! trusts a claim. A token is also revoked by the store forgetting its SHA-256, which is
//! the caller's business.

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use miniserde::{json, Deserialize, Serialize};
use sha2::Sha256;

/// The header every token carries: only HS256 is made or accepted.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// The `typ` claim of a host token, so that no other kind of token passes for one.
pub const HOST_TYPE: &str = "host";
/// A token longer than this is refused before any decoding.
const MAX_LEN: usize = 2048;

/// What a host token says.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Claims {
    pub typ: String,
    pub host_id: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// A random id, so that no two tokens are alike: one issued in the same second as a
    /// token just revoked for the same host is not that token again. (Tokens issued before
    /// it was added have none.)
    pub jti: Option<String>,
}

impl Claims {
    pub fn host(host_id: &str, iat: i64, lifetime_secs: i64, jti: String) -> Claims {
        let exp = iat.saturating_add(lifetime_secs);
        Claims { typ: HOST_TYPE.to_owned(), host_id: host_id.to_owned(), iat, exp, jti: Some(jti) }
    }
}

/// Why a token was refused; said to the client only as "not valid", logged by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts of JSON, or too long.
    Malformed,
    /// An algorithm other than HS256 (`none` included).
    Algorithm,
    Signature,
    /// Signed by us, but not a host token.
    Kind,
    Expired,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Algorithm => "wrong algorithm",
            Invalid::Signature => "bad signature",
            Invalid::Kind => "not a host token",
            Invalid::Expired => "expired",
        }
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// The signed token for `claims`.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    let signed = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(HEADER.as_bytes()),
        Base64UrlUnpadded::encode_string(json::to_string(claims).as_bytes())
    );
    let mut mac = mac(secret);
    mac.update(signed.as_bytes());
    let signature = Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The claims of `token`, if it is a host token we signed with `secret` and it has not
/// expired by `now_secs`.
pub fn verify(secret: &[u8], token: &str, now_secs: i64) -> Result<Claims, Invalid> {
    if token.len() > MAX_LEN {
        return Err(Invalid::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let decode = |part: &str| Base64UrlUnpadded::decode_vec(part).map_err(|_| Invalid::Malformed);
    let header: Header = from_json(&decode(header)?)?;
    if header.alg != "HS256" {
        return Err(Invalid::Algorithm);
    }
    let mut mac = mac(secret);
    mac.update(&token.as_bytes()[..token.len() - signature.len() - 1]);
    mac.verify_slice(&decode(signature)?).map_err(|_| Invalid::Signature)?;
    let claims: Claims = from_json(&decode(claims)?)?;
    if claims.typ != HOST_TYPE {
        return Err(Invalid::Kind);
    }
    if claims.exp <= now_secs {
        return Err(Invalid::Expired);
    }
    Ok(claims)
}

fn from_json<T: Deserialize>(bytes: &[u8]) -> Result<T, Invalid> {
    std::str::from_utf8(bytes).ok().and_then(|text| json::from_str(text).ok()).ok_or(Invalid::Malformed)
}

/// Whether `credential` has a JWT's form (three dot-separated parts), so that routes for
/// people and for Hearth's agents can refuse it by name.
pub fn looks_like(credential: &str) -> bool {
    credential.split('.').count() == 3 && credential.starts_with("eyJ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn signs_a_three_part_token_that_verifies() {
        let claims = Claims::host("h-1", 1_000, 100, "j".into());
        let token = sign(SECRET, &claims);
        assert_eq!(token.split('.').count(), 3, "{token}");
        assert!(looks_like(&token));
        assert_eq!(verify(SECRET, &token, 1_050), Ok(claims));
        // Tokens issued before `jti` was kept still verify.
        let header = Base64UrlUnpadded::encode_string(HEADER.as_bytes());
        let body = Base64UrlUnpadded::encode_string(br#"{"typ":"host","host_id":"h-1","iat":1000,"exp":1100}"#);
        let mut mac = mac(SECRET);
        mac.update(format!("{header}.{body}").as_bytes());
        let older = format!("{header}.{body}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()));
        assert_eq!(verify(SECRET, &older, 1_050).map(|c| c.jti), Ok(None));
    }

    #[test]
    fn refuses_what_it_must() {
        let token = sign(SECRET, &Claims::host("h-1", 1_000, 100, "j".into()));
        let (signed, _) = token.rsplit_once('.').unwrap();
        let forged_claims = Base64UrlUnpadded::encode_string(br#"{"typ":"host","host_id":"h-2","iat":0,"exp":9999}"#);
        let header = token.split('.').next().unwrap();
        let none_header = Base64UrlUnpadded::encode_string(br#"{"alg":"none"}"#);
        let user = sign(SECRET, &Claims { typ: "user".into(), ..Claims::host("h-1", 1_000, 100, "j".into()) });
        let cases: &[(&str, String, i64, Invalid)] = &[
            ("expired", token.clone(), 1_100, Invalid::Expired),
            ("other secret", sign(b"another", &Claims::host("h-1", 1_000, 100, "j".into())), 1_050, Invalid::Signature),
            (
                "claims swapped",
                format!("{header}.{forged_claims}.{}", token.rsplit('.').next().unwrap()),
                0,
                Invalid::Signature,
            ),
            ("alg none", format!("{none_header}.{forged_claims}."), 0, Invalid::Algorithm),
            ("no signature", format!("{signed}."), 1_050, Invalid::Signature),
            ("two parts", signed.to_owned(), 1_050, Invalid::Malformed),
            ("four parts", format!("{token}.x"), 1_050, Invalid::Malformed),
            ("not base64", "e!.e!.e!".to_owned(), 0, Invalid::Malformed),
            ("not a host token", user, 1_050, Invalid::Kind),
            ("huge", "a".repeat(5000), 0, Invalid::Malformed),
            ("empty", String::new(), 0, Invalid::Malformed),
        ];
        for (what, token, now, expected) in cases {
            assert_eq!(verify(SECRET, token, *now), Err(*expected), "{what}");
        }
    }
}
