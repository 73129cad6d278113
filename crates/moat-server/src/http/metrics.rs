//! `/_status/vars`: every metric of the process in Prometheus' text format,
//! unauthenticated as in CockroachDB. The recorder is
//! metrics-exporter-prometheus (no HTTP listener of its own, no push
//! gateway): names have their dots turned into underscores
//! (`security.certificate.expiration.node` →
//! `security_certificate_expiration_node`) and counters end in `_total`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `security_certificate_expiration_<kind>` | gauge | NotAfter in unix seconds; kinds `ca`, `client_ca`, `ui_ca`, `node`, `node_client`, `ui` (0 when missing) |
//! | `security_certificate_ttl_<kind>` | gauge | seconds left (0 when missing or expired) |
//! | `security_certificate_reloads_total` | counter | `result` = `success`, `failure` |
//! | `security_tls_handshake_failures_total` | counter | `listener` (`sql`, `rpc`, `http`), `reason` |
//! | `sql_connections_open` | gauge | `kind` |
//! | `sql_connections_refused_total` | counter | `reason` |
//! | `sql_auth_successes_total`, `sql_auth_failures_total` | counter | `method` |
//! | `http_connections_open` | gauge | `kind` = `https`, `http` |
//! | `http_auth_successes_total`, `http_auth_failures_total` | counter | `method`, `reason` |

use std::sync::{Mutex, OnceLock};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::ServerError;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the Prometheus recorder for the whole process (idempotent).
/// Metrics recorded before it are lost; gauges are set again by the store's
/// minute tick and by [`super::serve`].
pub fn install_metrics_recorder() -> Result<(), ServerError> {
    static INSTALL: Mutex<()> = Mutex::new(());
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .install_recorder()
        .map_err(|e| ServerError::Invalid(format!("cannot install the Prometheus metrics recorder: {e}")))?;
    let _ = HANDLE.set(handle);
    describe();
    // Present from the start, so dashboards and alerts see zeros.
    for result in ["success", "failure"] {
        metrics::counter!("security.certificate.reloads", "result" => result).absolute(0);
    }
    for kind in ["https", "http"] {
        metrics::gauge!("http.connections.open", "kind" => kind).increment(0.0);
    }
    Ok(())
}

/// The help texts (`# HELP`).
fn describe() {
    for (kind, what) in [
        ("ca", "the CA certificate (ca.crt)"),
        ("client-ca", "the client CA certificate (ca-client.crt)"),
        ("ui-ca", "the UI CA certificate (ca-ui.crt)"),
        ("node", "the node certificate (node.crt)"),
        ("node-client", "the node's client certificate (client.node.crt)"),
        ("ui", "the UI certificate (ui.crt)"),
    ] {
        metrics::describe_gauge!(
            format!("security.certificate.expiration.{kind}"),
            format!("Expiration of {what}, in unix seconds; 0 when missing or broken")
        );
        metrics::describe_gauge!(
            format!("security.certificate.ttl.{kind}"),
            format!("Seconds until {what} expires; 0 when missing, broken or expired")
        );
    }
    metrics::describe_counter!(
        "security.certificate.reloads",
        "Certificate reloads by result (success, failure: refused, old certificates kept)"
    );
    metrics::describe_counter!(
        "security.tls.handshake_failures",
        "Failed TLS handshakes and post-handshake refusals, by listener and reason"
    );
    metrics::describe_gauge!("sql.connections.open", "Open SQL connections by kind");
    metrics::describe_counter!(
        "sql.connections.refused",
        "SQL connections refused before authentication, by reason"
    );
    metrics::describe_counter!("sql.auth.successes", "Successful SQL authentications by method");
    metrics::describe_counter!("sql.auth.failures", "Failed SQL authentications by method");
    metrics::describe_gauge!(
        "http.connections.open",
        "Open console connections (https, or plain http being redirected)"
    );
    metrics::describe_counter!("http.auth.successes", "Successful console logins by method");
    metrics::describe_counter!(
        "http.auth.failures",
        "Failed or refused console logins by method and reason"
    );
    metrics::describe_gauge!("cluster.node_id", "This node's id in its cluster (0 before it has one)");
    metrics::describe_histogram!(
        "raft.log.appends_per_fsync",
        "Raft log appends written together with one fsync (group commit)"
    );
    metrics::describe_counter!(
        "rpc.refused",
        "Node-to-node RPCs refused because the caller's certificate names another principal"
    );
}

/// The text exposition of every metric, if the recorder is installed.
pub fn render() -> Option<String> {
    let h = HANDLE.get()?;
    h.run_upkeep();
    Some(h.render())
}

/// `GET /_status/vars`.
pub(crate) async fn vars() -> Response {
    match render() {
        Some(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not available: another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}
