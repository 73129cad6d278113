//! Console sessions: random 256-bit ids handed out in the `moat_session`
//! cookie, kept in memory by the process (a restart logs everyone out).
//! Only the SHA-256 of an id is stored, so the table never holds a usable
//! cookie. Sessions come from a password login on the console or from root
//! over SQL (`SELECT moat_create_console_session('alice')`, see
//! [`issue_for_sql`]); every node served by this process accepts them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;

/// Name of the session cookie.
pub const COOKIE: &str = "moat_session";
/// Default lifetime of a session (CockroachDB's `auth-session login` default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Longest session root may ask for over SQL.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// At most this many live sessions; the oldest go first beyond it.
const MAX_SESSIONS: usize = 100_000;

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SQL user.
    pub user: String,
    /// When it was made.
    pub created: OffsetDateTime,
    /// When it ends.
    pub expires: OffsetDateTime,
    /// How it was made: `password` or `sql`.
    pub origin: &'static str,
}

/// The process's sessions.
#[derive(Default)]
pub struct SessionStore {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl SessionStore {
    /// The store shared by every console (and the SQL interception) of
    /// this process.
    pub fn global() -> &'static SessionStore {
        static STORE: OnceLock<SessionStore> = OnceLock::new();
        STORE.get_or_init(SessionStore::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a session for `user` lasting `ttl`; returns the id (the
    /// cookie's value: 43 base64url characters) and the session.
    pub fn create(&self, user: &str, ttl: Duration, origin: &'static str) -> (String, Session) {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = OffsetDateTime::now_utc();
        let session = Session {
            user: user.to_string(),
            created: now,
            expires: now + ttl,
            origin,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The live session with this id (an expired one is removed).
    pub fn lookup(&self, token: &str) -> Option<Session> {
        if token.len() != 43 {
            return None;
        }
        let key = digest(token);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires > OffsetDateTime::now_utc() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session; whether there was one.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().remove(&digest(token)).is_some()
    }

    /// Ends every session of a user; how many there were.
    pub fn revoke_user(&self, user: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.user != user);
        before - map.len()
    }
}

/// Makes a session for `user` on behalf of root over SQL and returns the
/// cookie (`moat_session=<id>`). Used by the SQL interception of
/// `SELECT moat_create_console_session('user' [, 'lifetime'])`.
pub fn issue_for_sql(user: &str, ttl: Duration) -> String {
    let (token, s) = SessionStore::global().create(user, ttl, "sql");
    tracing::info!(user, expires = %s.expires, "console session created over SQL");
    format!("{COOKIE}={token}")
}

/// The session cookie's value in a request, if any.
pub fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// HTTP-date (RFC 9110) of a time, for `Expires`.
pub fn http_date(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(token: &str, s: &Session) -> String {
    let max_age = (s.expires - OffsetDateTime::now_utc()).whole_seconds().max(0);
    format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}; Expires={}",
        http_date(s.expires)
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke() {
        let store = SessionStore::default();
        let (t, s) = store.create("alice", Duration::from_secs(60), "password");
        assert_eq!(t.len(), 43);
        assert_eq!(store.lookup(&t).unwrap(), s);
        assert!(store.lookup("x").is_none());
        let (t2, _) = store.create("alice", Duration::from_secs(60), "sql");
        assert_ne!(t, t2);
        assert!(store.revoke(&t));
        assert!(store.lookup(&t).is_none());
        assert_eq!(store.revoke_user("alice"), 1);
        assert!(store.lookup(&t2).is_none());
        let (t3, _) = store.create("bob", Duration::ZERO, "sql");
        assert!(store.lookup(&t3).is_none(), "expired at once");
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=b; moat_session=xyz; c=d".parse().unwrap(),
        );
        assert_eq!(token_from(&h).as_deref(), Some("xyz"));
        let store = SessionStore::default();
        let (t, s) = store.create("alice", DEFAULT_TTL, "password");
        let c = set_cookie(&t, &s);
        for flag in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3",
            "Expires=",
        ] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(http_date(OffsetDateTime::UNIX_EPOCH).starts_with("Thu, 01 Jan 1970 00:00:00 GMT"));
    }
}
