//! The JSON API behind the pages. Every endpoint needs a session (the
//! `moat_session` cookie); without one the answer is 401 with
//! `{"error": "..."}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::login::session_of;
use super::{json_error, report, Shared};

const NO_SESSION: &str =
    "a console session is required: log in at /login (POST username, password) or run `moat auth-session login USER`";

/// `GET /_status/certificates`: this node's certificates (see
/// [`report::CertificatesReport`]).
pub(crate) async fn certificates(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&st, &headers).await.is_none() {
        return json_error(StatusCode::UNAUTHORIZED, NO_SESSION);
    }
    Json(report::certificates(&st.ctx)).into_response()
}

/// `GET /_status/certificates/{node}`: `local` or this node's id.
pub(crate) async fn certificates_of(
    State(st): State<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
) -> Response {
    if session_of(&st, &headers).await.is_none() {
        return json_error(StatusCode::UNAUTHORIZED, NO_SESSION);
    }
    if node == "local" || node == st.ctx.node_id().to_string() {
        return Json(report::certificates(&st.ctx)).into_response();
    }
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "this console serves node {}'s certificates; ask node {node}'s console",
            st.ctx.node_id()
        ),
    )
}

/// `GET /_status/nodes`: `{"node_id": this node, "nodes": [...]}`.
pub(crate) async fn nodes(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&st, &headers).await.is_none() {
        return json_error(StatusCode::UNAUTHORIZED, NO_SESSION);
    }
    Json(serde_json::json!({
        "node_id": st.ctx.node_id(),
        "nodes": report::nodes(&st.ctx, Some(st.addr.to_string())),
    }))
    .into_response()
}
