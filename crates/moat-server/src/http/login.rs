//! Login and logout, and the session check every protected page makes.
//!
//! A login checks the SQL user's password against the SCRAM verifier stored
//! in `moat_users` (on a blocking thread: PBKDF2). A user that does not
//! exist or has no password costs the same work and gets the same answer as
//! a wrong password. Failures are slowed by the [`super::throttle`]. Posts
//! must come from the console itself (an `Origin` header, when sent, must be
//! this host). Passwords are never logged.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::html::{esc, page};
use super::session::{self, Session};
use super::throttle::Blocked;
use super::{ConnMeta, Shared};
use crate::scram::Verifier;
use crate::users;

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

impl std::fmt::Debug for LoginForm {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after logging in: a local path, never another site.
pub(crate) fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() < 2048
        && next.bytes().all(|b| b.is_ascii_graphic())
        && !next.starts_with("/login")
        && !next.starts_with("/logout");
    if ok {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// The session of a request, if it has a live one whose user still exists
/// (dropping a user ends their console sessions).
pub(crate) async fn session_of(st: &Shared, headers: &HeaderMap) -> Option<Session> {
    let token = session::token_from(headers)?;
    let s = st.sessions.lookup(&token)?;
    let db = st.ctx.db.clone();
    let user = s.user.clone();
    let exists = tokio::task::spawn_blocking(move || db.connect().ok().and_then(|c| users::exists(&c, &user).ok()))
        .await
        .ok()
        .flatten();
    match exists {
        Some(true) => Some(s),
        Some(false) => {
            st.sessions.revoke(&token);
            None
        }
        None => {
            tracing::warn!("cannot check a console session: the user store is unavailable");
            None
        }
    }
}

/// Whether a POST comes from a page of this console: browsers send
/// `Origin`; when present it must be `https://<host>`, the host being the
/// `Host` header (HTTP/1.1) or the request's authority (HTTP/2).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    !host.is_empty() && origin == format!("https://{host}")
}

fn login_page(st: &Shared, status: StatusCode, message: Option<(&str, &str)>, user: &str, next: &str) -> Response {
    let banner = match message {
        Some((kind, text)) => format!("<div class=\"banner {kind}\">{}</div>", esc(text)),
        None => String::new(),
    };
    let body = format!(
        "<div class=\"login\"><div class=\"card\"><h1>Sign in</h1>\
         <p class=\"sub\">Node {} console · use a SQL user's password</p>{banner}\
         <form method=\"post\" action=\"/login\">\
         <label for=\"username\">User</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autofocus required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button class=\"primary\" type=\"submit\">Sign in</button></form>\
         <p class=\"small\" style=\"margin-top:16px\">Root can also open a session over SQL: \
         <span class=\"mono\" style=\"white-space:nowrap\">moat auth-session login USER</span></p></div></div>",
        st.ctx.node_id(),
        esc(user),
        esc(next)
    );
    (status, page("Sign in", "", None, st.ctx.node_id(), &body)).into_response()
}

/// `GET /login`.
pub(crate) async fn form(State(st): State<Shared>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(&q.next);
    if session_of(&st, &headers).await.is_some() {
        return redirect_to(&next, None);
    }
    login_page(&st, StatusCode::OK, None, "", &next)
}

fn redirect_to(location: &str, cookie: Option<String>) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    res
}

fn blocked_answer(st: &Shared, b: Blocked, user: &str, next: &str) -> Response {
    let mut res = login_page(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        Some(("bad", &b.message())),
        user,
        next,
    );
    if let Ok(v) = HeaderValue::from_str(&b.wait_secs().to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// `POST /login`.
pub(crate) async fn submit(
    State(st): State<Shared>,
    Extension(meta): Extension<ConnMeta>,
    headers: HeaderMap,
    uri: Uri,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(&f.next);
    if !same_origin(&headers, &uri) {
        return (StatusCode::FORBIDDEN, "cross-site login refused\n").into_response();
    }
    let user = moat_pki::username::normalize(f.username.trim());
    if user.is_empty() || f.password.is_empty() {
        return login_page(
            &st,
            StatusCode::BAD_REQUEST,
            Some(("bad", "enter a user name and a password")),
            &user,
            &next,
        );
    }
    let ip = meta.peer.ip();
    if let Err(b) = st.throttle.check(&user, ip) {
        ::metrics::counter!("http.auth.failures", "method" => "password", "reason" => "throttled").increment(1);
        tracing::warn!(user, peer = %meta.peer, "console login refused: {}", b.message());
        return blocked_answer(&st, b, &user, &next);
    }
    let db = st.ctx.db.clone();
    let (u, password) = (user.clone(), f.password);
    let checked = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let conn = db.connect().map_err(|e| e.to_string())?;
        let stored = users::verifier(&conn, &u).map_err(|e| e.to_string())?;
        Ok(match stored {
            Some(v) => v.matches(&password),
            None => {
                // The same PBKDF2 work as a real check, then no.
                let _ = Verifier::new(&password);
                false
            }
        })
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match checked {
        Ok(true) => {
            st.throttle.success(&user);
            let (token, s) = st.sessions.create(&user, st.opts.session_ttl, "password");
            ::metrics::counter!("http.auth.successes", "method" => "password").increment(1);
            tracing::info!(user, peer = %meta.peer, expires = %s.expires, "console login");
            redirect_to(&next, Some(session::set_cookie(&token, &s)))
        }
        Ok(false) => {
            ::metrics::counter!("http.auth.failures", "method" => "password", "reason" => "password").increment(1);
            tracing::warn!(user, peer = %meta.peer, "console login failed: wrong user name or password");
            match st.throttle.failure(&user, ip) {
                Some(b) => blocked_answer(&st, b, &user, &next),
                None => login_page(
                    &st,
                    StatusCode::UNAUTHORIZED,
                    Some(("bad", "wrong user name or password")),
                    &user,
                    &next,
                ),
            }
        }
        Err(e) => {
            tracing::error!(user, "console login: cannot read the user store: {e}");
            login_page(
                &st,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(("bad", "the user store is unavailable; see the node's log")),
                &user,
                &next,
            )
        }
    }
}

/// `POST /logout`: ends the session and removes the cookie.
pub(crate) async fn logout(State(st): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    if !same_origin(&headers, &uri) {
        return (StatusCode::FORBIDDEN, "cross-site logout refused\n").into_response();
    }
    if let Some(token) = session::token_from(&headers) {
        if let Some(s) = st.sessions.lookup(&token) {
            tracing::info!(user = s.user, "console logout");
        }
        st.sessions.revoke(&token);
    }
    redirect_to("/login", Some(session::clear_cookie()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next("/certificates/local"), "/certificates/local");
        assert_eq!(safe_next("//evil.com"), "/");
        assert_eq!(safe_next("https://evil.com"), "/");
        assert_eq!(safe_next("/\\evil.com"), "/");
        assert_eq!(safe_next("/login"), "/");
        assert_eq!(safe_next(""), "/");
    }

    #[test]
    fn form_debug_hides_password() {
        let f = LoginForm {
            username: "alice".into(),
            password: "hunter2".into(),
            next: "/".into(),
        };
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    #[test]
    fn origin() {
        let mut h = HeaderMap::new();
        let path: Uri = "/login".parse().unwrap();
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://localhost:8080".parse().unwrap());
        assert!(!same_origin(&h, &path), "no host at all");
        // HTTP/2: the authority is in the URI.
        assert!(same_origin(&h, &"https://localhost:8080/login".parse().unwrap()));
        h.insert(header::HOST, "localhost:8080".parse().unwrap());
        assert!(same_origin(&h, &path));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, &path));
    }
}
