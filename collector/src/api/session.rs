//! Logging in and out of the dashboard: sessions in an HttpOnly cookie, and backoff on
//! failed attempts.
//!
//! A login is two steps so that argon2id never runs on the request thread: `verify`
//! checks the password on a snapshot (the server runs it in its login pool), and
//! `finish` writes what that decided, in a batch.

use super::{audit, internal, ApiError, Context, Handled, Reply, Request, User};
use crate::limits;
use crate::model::{Role, SessionRecord};
use crate::secret::{self, SESSION_PREFIX};
use crate::store::{ReadTxn, RwTxn, Txn};
use miniserde::{json, Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// How long a session lasts.
pub const SESSION_MS: i64 = 24 * 3600 * 1000;
/// A key's failures are forgotten this long after its last one.
const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures allowed without waiting, for one user name from one client, and for one
/// client over every name.
const FREE_PER_NAME: u32 = 5;
const FREE_PER_CLIENT: u32 = 20;
/// Past its free failures a key waits 1 s, then 2, 4… up to this: a backoff, never a
/// lock, so nobody can lock another person out for long.
const MAX_WAIT_MS: i64 = 60 * 1000;
/// The most keys the limiter remembers; past it, the stalest are forgotten.
const MAX_KEYS: usize = 10_000;
/// The longest password accepted, in bytes.
pub const MAX_PASSWORD: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: i64,
}

impl Failures {
    /// When the next attempt may come, given `free` failures without waiting.
    fn next_allowed(&self, free: u32) -> i64 {
        if self.count < free {
            return i64::MIN;
        }
        let doublings = (self.count - free).min(16);
        self.last + (1000i64 << doublings).min(MAX_WAIT_MS)
    }
}

/// Failed logins, by `name:NAME@CLIENT` and `client:CLIENT`. Names are counted whether
/// or not such a user exists, so limits do not tell which names do.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<String, Failures>,
}

impl LoginLimiter {
    /// Milliseconds to wait before any of `keys` may try again, if any.
    fn wait_ms(&mut self, keys: &[(String, u32)], now: i64) -> Option<i64> {
        keys.iter()
            .filter_map(|(key, free)| {
                let failures = self.failures.get(key)?;
                if now - failures.last >= WINDOW_MS {
                    self.failures.remove(key);
                    return None;
                }
                let wait = failures.next_allowed(*free).saturating_sub(now);
                (wait > 0).then_some(wait)
            })
            .max()
    }

    fn fail(&mut self, keys: &[(String, u32)], now: i64) {
        if self.failures.len() >= MAX_KEYS {
            self.failures.retain(|_, f| now - f.last < WINDOW_MS);
            if self.failures.len() >= MAX_KEYS {
                self.failures.clear();
            }
        }
        for (key, _) in keys {
            let failures = self.failures.entry(key.clone()).or_insert(Failures { count: 0, last: now });
            failures.count += 1;
            failures.last = now;
        }
    }

    fn forget(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// The address a client is counted under: IPv6 by its /64, which one host usually holds whole.
pub(super) fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Me {
    user: String,
    user_id: String,
    role: &'static str,
}

/// What checking a login decided; `finish` writes it.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// The body was not a login, or the password is too long to be anyone's.
    Refused(ApiError),
    /// Too many recent failures: try again after this many milliseconds.
    Wait(i64),
    /// Wrong name or password; the name, if such a user exists.
    Failed(Option<String>),
    Verified(String),
}

/// Checks the name and password against a snapshot: argon2id, slow on purpose. Counts
/// failures in `ctx.logins`.
pub(super) fn verify<T: ReadTxn>(req: &Request, txn: &Txn<T>, ctx: &Context) -> LoginOutcome {
    let Ok(Login { username, password }) = json::from_str::<Login>(&req.body) else {
        let message = r#"send {"username": "…", "password": "…"} as JSON"#;
        return LoginOutcome::Refused(ApiError::new(400, "invalid_json", message));
    };
    // Refused before anything is looked up, so the answer says nothing about the name.
    if password.len() > MAX_PASSWORD || username.len() > MAX_PASSWORD {
        let message = format!("a user name or password is at most {MAX_PASSWORD} bytes");
        return LoginOutcome::Refused(ApiError::invalid(message));
    }
    // Without a trusted proxy, a forwarded request's address is the proxy's, shared by
    // everyone: counting it would let one person's failures hold back every login.
    let client = req.client.filter(|_| !req.forwarded || req.trusted_client).map(client_key);
    let mut keys = vec![(format!("name:{username}@{}", client.as_deref().unwrap_or("")), FREE_PER_NAME)];
    if let Some(client) = &client {
        keys.push((format!("client:{client}"), FREE_PER_CLIENT));
    }
    let limiter = || ctx.logins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(wait) = limiter().wait_ms(&keys, ctx.now_ms) {
        return LoginOutcome::Wait(wait);
    }
    let user = match txn.user(&username) {
        Ok(user) => user,
        Err(e) => return LoginOutcome::Refused(ApiError::storage(&e)),
    };
    let verified = match &user {
        Some(user) => secret::verify_password(&password, &user.password),
        None => {
            secret::verify_nobody(&password);
            false
        }
    };
    match user {
        Some(user) if verified => {
            limiter().forget(&keys[0].0);
            LoginOutcome::Verified(user.name)
        }
        user => {
            limiter().fail(&keys, ctx.now_ms);
            LoginOutcome::Failed(user.map(|u| u.name))
        }
    }
}

/// Writes what `verify` decided: a session and its cookie, or the failure in the audit log.
pub(super) fn finish(outcome: LoginOutcome, req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let name = match outcome {
        LoginOutcome::Refused(e) => return Err(e.into()),
        LoginOutcome::Wait(ms) => {
            let wait = ((ms + 999) / 1000).max(1);
            let message = format!("too many failed logins; try again in {wait} s");
            let error = ApiError::new(429, "too_many_attempts", message);
            return Err(ApiError { headers: vec![("Retry-After", wait.to_string())], ..error }.into());
        }
        LoginOutcome::Failed(user) => {
            // What was typed as a name is never logged unless it is one: it may be a password.
            let actor = user.unwrap_or_else(|| "(unknown user)".to_owned());
            log::warn!("failed login for {actor} from {}", req.client_text());
            // A flood of failures must not crowd the rest out of the audit log.
            if ctx.limits.take("audit:login_failed", limits::AUDITED_LOGIN_FAILURES, ctx.now_ms, req.seq).is_ok() {
                audit(txn, ctx, req, &actor, "login_failed", None, String::new())?;
            }
            return Err(ApiError::new(401, "invalid_credentials", "the user name or password is wrong").into());
        }
        LoginOutcome::Verified(name) => name,
    };
    // The user may have been removed while the password was being checked.
    let Some(user) = txn.user(&name)? else {
        return Err(ApiError::new(401, "invalid_credentials", "the user name or password is wrong").into());
    };
    let cookie = secret::new_secret(SESSION_PREFIX).map_err(internal)?;
    let session =
        SessionRecord { user: user.name.clone(), created_at: ctx.now_ms, expires_at: ctx.now_ms + SESSION_MS };
    txn.put_session(&secret::hash(&cookie), &session)?;
    audit(txn, ctx, req, &user.name, "login", None, String::new())?;
    log::info!("{} logged in from {}", user.name, req.client_text());
    // `Secure` whenever the browser reached us over HTTPS, by a trusted proxy's word or
    // not: the flag only stops the cookie from travelling over plain HTTP.
    let secure = if req.https || req.forwarded_https { "; Secure" } else { "" };
    let attributes = format!("HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_MS / 1000);
    Ok(with_session_cookies(Reply::json(200, &me_view(&user.name, user.role())), &cookie, &attributes))
}

/// The session cookie, under Hearth's name and under restic-manager's (`rm_session`), whose
/// clients may look for it by that name; either is taken back (`http::read_request`).
fn with_session_cookies(reply: Reply, value: &str, attributes: &str) -> Reply {
    ["hearth_session", "rm_session"]
        .into_iter()
        .fold(reply, |reply, name| reply.with_header("Set-Cookie", format!("{name}={value}; {attributes}")))
}

fn me_view(name: &str, role: Role) -> Me {
    Me { user: name.to_owned(), user_id: name.to_owned(), role: role.as_str() }
}

/// Ends the session the cookie names, if any, and clears the cookie either way.
pub(super) fn logout(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    if let Some(cookie) = &req.session {
        let hash = secret::hash(cookie);
        if let Some(session) = txn.session(&hash)? {
            txn.delete_session(&hash)?;
            audit(txn, ctx, req, &session.user, "logout", None, String::new())?;
        }
    }
    let logged_out = Reply::json(200, &LoggedOut { status: "logged_out" });
    Ok(with_session_cookies(logged_out, "", "HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))
}

#[derive(Serialize)]
struct LoggedOut {
    status: &'static str,
}

pub(super) fn me(user: &User) -> Handled {
    Ok(Reply::json(200, &me_view(&user.name, user.role)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_never_lock_for_long() {
        let mut limiter = LoginLimiter::default();
        let keys = [("name:ann@1.2.3.4".to_owned(), 3)];
        for t in 0..3 {
            assert_eq!(limiter.wait_ms(&keys, t * 100), None);
            limiter.fail(&keys, t * 100);
        }
        // Three free failures; then 1 s after the last, 2 s after the next, and so on.
        assert_eq!(limiter.wait_ms(&keys, 200), Some(1000));
        assert_eq!(limiter.wait_ms(&keys, 1200), None);
        limiter.fail(&keys, 1200);
        assert_eq!(limiter.wait_ms(&keys, 1200), Some(2000));
        for _ in 0..30 {
            limiter.fail(&keys, 5000);
        }
        // However many failures, the wait is capped: a backoff, not a lockout.
        assert_eq!(limiter.wait_ms(&keys, 5000), Some(MAX_WAIT_MS));
        assert_eq!(limiter.wait_ms(&keys, 5000 + MAX_WAIT_MS), None);
        // And all is forgotten a window after the last failure.
        assert_eq!(limiter.wait_ms(&keys, 5000 + WINDOW_MS), None);
        assert!(limiter.failures.is_empty());
        limiter.fail(&keys, 0);
        limiter.forget("name:ann@1.2.3.4");
        assert!(limiter.failures.is_empty());
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(client_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(client_key("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
