//! Logging in and out of the dashboard: sessions in an HttpOnly cookie, and a limit on
//! failed attempts per user and per client address.

use super::{audit, internal, ApiError, Context, Handled, Reply, Request, User};
use crate::model::SessionRecord;
use crate::secret::{self, SESSION_PREFIX};
use crate::store::Txn;
use heed::RwTxn;
use miniserde::{json, Deserialize, Serialize};
use std::collections::HashMap;

/// How long a session lasts.
pub const SESSION_MS: i64 = 24 * 3600 * 1000;
/// The window failed logins are counted over.
const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failed logins allowed per user, and per client address, within the window.
const PER_USER: usize = 5;
const PER_CLIENT: usize = 20;
/// The most keys the limiter remembers; past it, the stalest are forgotten.
const MAX_KEYS: usize = 10_000;

/// Failed login times, by `user:NAME` (existing users only) and `client:ADDRESS`.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<String, Vec<i64>>,
}

impl LoginLimiter {
    /// Seconds to wait if any of `keys` is over its limit.
    fn retry_after(&mut self, keys: &[(String, usize)], now: i64) -> Option<i64> {
        keys.iter()
            .filter_map(|(key, limit)| {
                let times = self.failures.get_mut(key)?;
                times.retain(|t| now - t < WINDOW_MS);
                (times.len() >= *limit).then(|| ((times[0] + WINDOW_MS - now + 999) / 1000).max(1))
            })
            .max()
    }

    fn fail(&mut self, keys: &[(String, usize)], now: i64) {
        if self.failures.len() >= MAX_KEYS {
            self.failures.retain(|_, times| times.last().is_some_and(|t| now - t < WINDOW_MS));
            if self.failures.len() >= MAX_KEYS {
                self.failures.clear();
            }
        }
        for (key, _) in keys {
            self.failures.entry(key.clone()).or_default().push(now);
        }
    }

    fn forget(&mut self, key: &str) {
        self.failures.remove(key);
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
    role: &'static str,
}

pub(super) fn login(req: &Request, txn: &mut Txn<RwTxn>, ctx: &Context) -> Handled {
    let Ok(Login { username, password }) = json::from_str::<Login>(&req.body) else {
        let message = r#"send {"username": "…", "password": "…"} as JSON"#;
        return Err(ApiError::new(400, "invalid_json", message).into());
    };
    let user = txn.user(&username)?;
    let mut keys = vec![(format!("client:{}", req.client_text()), PER_CLIENT)];
    if user.is_some() {
        keys.push((format!("user:{username}"), PER_USER));
    }
    let mut limiter = ctx.logins.borrow_mut();
    if let Some(wait) = limiter.retry_after(&keys, ctx.now_ms) {
        let message = format!("too many failed logins; try again in {wait} s");
        let error = ApiError::new(429, "too_many_attempts", message);
        return Err(ApiError { headers: vec![("Retry-After", wait.to_string())], ..error }.into());
    }
    let verified = match &user {
        Some(user) => password.len() <= 1024 && secret::verify_password(&password, &user.password),
        None => {
            secret::verify_nobody(&password);
            false
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        limiter.fail(&keys, ctx.now_ms);
        let name = clip(&username);
        log::warn!("failed login for {name:?} from {}", req.client_text());
        audit(txn, ctx, req, &name, "login_failed", None, String::new())?;
        return Err(ApiError::new(401, "invalid_credentials", "the user name or password is wrong").into());
    };
    limiter.forget(&format!("user:{username}"));
    let cookie = secret::new_secret(SESSION_PREFIX).map_err(internal)?;
    let session =
        SessionRecord { user: user.name.clone(), created_at: ctx.now_ms, expires_at: ctx.now_ms + SESSION_MS };
    txn.put_session(&secret::hash(&cookie), &session)?;
    audit(txn, ctx, req, &user.name, "login", None, String::new())?;
    log::info!("{} logged in from {}", user.name, req.client_text());
    let secure = if req.https { "; Secure" } else { "" };
    let set_cookie =
        format!("hearth_session={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_MS / 1000);
    Ok(Reply::json(200, &Me { role: user.role().as_str(), user: user.name }).with_header("Set-Cookie", set_cookie))
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
    let clear = "hearth_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0";
    Ok(Reply::json(200, &LoggedOut { status: "logged_out" }).with_header("Set-Cookie", clear))
}

#[derive(Serialize)]
struct LoggedOut {
    status: &'static str,
}

pub(super) fn me(user: &User) -> Handled {
    Ok(Reply::json(200, &Me { user: user.name.clone(), role: user.role.as_str() }))
}

/// A tried user name, cut short for the log and the audit log.
fn clip(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_a_key_until_the_window_passes() {
        let mut limiter = LoginLimiter::default();
        let keys = [("user:ann".to_owned(), 3)];
        for t in 0..3 {
            assert_eq!(limiter.retry_after(&keys, t * 1000), None);
            limiter.fail(&keys, t * 1000);
        }
        // The oldest failure (t = 0) leaves the window at 15 minutes.
        assert_eq!(limiter.retry_after(&keys, 3000), Some(897));
        assert_eq!(limiter.retry_after(&keys, WINDOW_MS - 1), Some(1));
        assert_eq!(limiter.retry_after(&keys, WINDOW_MS), None);
        limiter.forget("user:ann");
        assert_eq!(limiter.retry_after(&keys, WINDOW_MS), None);
    }
}
