//! Plain HTTP on the console port: everything is redirected (308, so a POST
//! stays a POST) to the same host, port and path over HTTPS, as CockroachDB
//! does; only `/health` answers in clear, for load balancers.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ConnMeta;

/// Whether a Host header value is a plain `host[:port]` (no userinfo,
/// path, spaces or control characters) that is safe to put in a Location.
fn sane_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

/// The middleware: requests that did not come over TLS are answered here.
pub(crate) async fn plain_http(req: Request, next: Next) -> Response {
    let Some(meta) = req.extensions().get::<ConnMeta>().copied() else {
        return next.run(req).await;
    };
    if meta.tls {
        return next.run(req).await;
    }
    if req.uri().path() == "/health" {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .filter(|h| sane_host(h))
        .unwrap_or_else(|| meta.local.to_string());
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{host}{path}");
    match HeaderValue::from_str(&location) {
        Ok(v) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, v)],
            format!("this console is served over HTTPS: {location}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "use https://\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert!(super::sane_host("localhost:8080"));
        assert!(super::sane_host("[::1]:8080"));
        assert!(!super::sane_host("evil.com/x"));
        assert!(!super::sane_host("a b"));
        assert!(!super::sane_host("user@host"));
    }
}
