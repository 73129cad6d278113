//! The HTML pages: overview and certificates. Server-rendered from the same
//! data as the JSON API ([`super::report`]); a request without a live
//! session is sent to the login page (303), coming back after it.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use time::OffsetDateTime;

use super::html::{esc, page, pill};
use super::login::session_of;
use super::report::{self, duration_text, relative_days, CertReport, CertificatesReport, Status};
use super::session::Session;
use super::{NodeSummary, Shared};

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The session, or the redirect to the login page.
async fn require(st: &Shared, headers: &HeaderMap, uri: &Uri) -> Result<Session, Response> {
    match session_of(st, headers).await {
        Some(s) => Ok(s),
        None => {
            let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            Err(Redirect::to(&format!("/login?next={}", percent_encode(here))).into_response())
        }
    }
}

fn when(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

fn date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

fn status_pill(s: Status) -> String {
    let kind = match s {
        Status::Ok => "ok",
        Status::Warning => "warn",
        _ => "bad",
    };
    pill(kind, s.label())
}

fn row_class(s: Status) -> &'static str {
    match s {
        Status::Ok => "",
        Status::Warning => "warn",
        _ => "bad",
    }
}

fn expiry_cell(not_after: Option<OffsetDateTime>, status: Status, now: OffsetDateTime) -> String {
    match not_after {
        None => "<span class=\"small\">—</span>".into(),
        Some(t) => {
            let class = match status {
                Status::Warning => "note-warn",
                Status::Expired | Status::Error | Status::NotYetValid => "note-bad",
                Status::Revoked => "",
                Status::Ok => "",
            };
            format!(
                "<div>{}</div><div class=\"small {class}\">{}</div>",
                date(t),
                esc(&relative_days(t, now))
            )
        }
    }
}

fn card(k: &str, v: &str, d: &str) -> String {
    format!("<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div><div class=\"d\">{d}</div></div>")
}

fn node_row(n: &NodeSummary, this: u64, now: OffsetDateTime) -> String {
    let live = if n.live {
        pill("ok", "live")
    } else {
        pill("bad", "down")
    };
    let leader = if n.is_leader {
        format!(" {}", pill("muted", "leader"))
    } else {
        String::new()
    };
    let uptime = match (n.live, n.started_at) {
        (true, Some(s)) => duration_text(now - s),
        _ => "—".into(),
    };
    let cert = match n.cert_expiry.and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()) {
        Some(t) => {
            let days = (t - now).whole_days();
            let status = if t <= now {
                Status::Expired
            } else if days < moat_pki::certsdir::EXPIRY_WARNING_DAYS {
                Status::Warning
            } else {
                Status::Ok
            };
            expiry_cell(Some(t), status, now)
        }
        None => "<span class=\"small\">unknown</span>".into(),
    };
    let link = if n.id == this {
        "<a href=\"/certificates/local\">certificates</a>".to_string()
    } else {
        match &n.http_address {
            Some(a) => format!(
                "<a href=\"/certificates/{}\">certificates</a> <span class=\"small\">on {}</span>",
                n.id,
                esc(a)
            ),
            None => "<span class=\"small\">—</span>".into(),
        }
    };
    format!(
        "<tr><td><b>n{}</b>{}{leader}</td><td class=\"mono\">{}</td><td>{live}</td><td>{uptime}</td>\
         <td>{}</td><td>{cert}</td><td>{link}</td></tr>",
        n.id,
        if n.id == this {
            " <span class=\"small\">(this node)</span>"
        } else {
            ""
        },
        esc(&n.address),
        esc(&n.version)
    )
}

/// `GET /`: the overview.
pub(crate) async fn overview(State(st): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let s = match require(&st, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = OffsetDateTime::now_utc();
    let ctx = &st.ctx;
    let nodes = report::nodes(ctx, Some(st.addr.to_string()));
    let live = nodes.iter().filter(|n| n.live).count();
    let certs = report::certificates(ctx);
    let sm = &certs.summary;
    let cert_state = if sm.error + sm.expired > 0 {
        let n = sm.error + sm.expired;
        format!(
            "<span class=\"note-bad\">{n} problem{}</span>",
            if n == 1 { "" } else { "s" }
        )
    } else if sm.warning > 0 {
        format!("<span class=\"note-warn\">{} expiring</span>", sm.warning)
    } else {
        "all valid".into()
    };
    let node_cert = certs.certificates.iter().find(|c| c.usage == "Node");
    let node_cert_text = match node_cert.and_then(|c| c.not_after) {
        Some(t) => (relative_days(t, now), format!("node.crt until {}", date(t))),
        None => ("—".into(), "no node.crt".into()),
    };
    let reload = match (&certs.reload.last_error, certs.reload.last_success) {
        (Some(_), _) => (pill("bad", "refused"), "the last reload was refused".to_string()),
        (None, Some(t)) => (
            pill("ok", "ok"),
            format!(
                "{} {}",
                if certs.reload.successes > 0 {
                    "reloaded"
                } else {
                    "loaded"
                },
                when(t)
            ),
        ),
        (None, None) => (pill("muted", "never"), String::new()),
    };
    let files_link = format!(
        "<a href=\"/certificates/local\">{} files, {} CRL{}</a>",
        certs.certificates.len(),
        certs.crls.len(),
        if certs.crls.len() == 1 { "" } else { "s" }
    );
    let title = if ctx.cluster.is_some() {
        "Cluster overview"
    } else {
        "Node overview"
    };
    let liveness = if live == nodes.len() {
        "all nodes heartbeating"
    } else {
        "some nodes are down"
    };
    let cards = [
        card("Nodes live", &format!("{live} / {}", nodes.len()), liveness),
        card(
            "Uptime",
            &duration_text(now - ctx.started_at),
            &format!("since {}", when(ctx.started_at)),
        ),
        card("Certificates", &cert_state, &files_link),
        card("Node certificate", &esc(&node_cert_text.0), &esc(&node_cert_text.1)),
        card("Last reload", &reload.0, &esc(&reload.1)),
    ]
    .concat();
    let mut body = format!(
        "<h1>{title}</h1><p class=\"sub\">{} node{} · {live} live · this is node {} \
         (SQL on <span class=\"mono\">{}</span>)</p><div class=\"cards\">{cards}</div>",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        ctx.node_id(),
        esc(&ctx.sql_addr.to_string()),
    );
    body.push_str(
        "<div class=\"panel\"><h2>Nodes</h2><table><tr><th>Node</th><th>Address</th><th>Liveness</th>\
         <th>Uptime</th><th>Version</th><th>Node certificate</th><th></th></tr>",
    );
    for n in &nodes {
        body.push_str(&node_row(n, ctx.node_id(), now));
    }
    body.push_str("</table></div>");
    page(title, "overview", Some(&s.user), ctx.node_id(), &body).into_response()
}

/// `GET /certificates`: this node's page.
pub(crate) async fn certificates_index() -> Redirect {
    Redirect::to("/certificates/local")
}

fn cert_row(c: &CertReport, now: OffsetDateTime) -> String {
    let subject = match (&c.common_name, &c.subject) {
        (Some(cn), Some(dn)) => format!("<b>{}</b><div class=\"small\">{}</div>", esc(cn), esc(dn)),
        (None, Some(dn)) => esc(dn),
        _ => "<span class=\"small\">—</span>".into(),
    };
    let sans = if c.sans.is_empty() {
        "<span class=\"small\">—</span>".to_string()
    } else {
        c.sans
            .iter()
            .map(|s| format!("<span class=\"chip\">{}</span>", esc(s)))
            .collect()
    };
    let usage = match &c.user {
        Some(u) => format!("{} <span class=\"small\">user {}</span>", esc(&c.usage), esc(u)),
        None => esc(&c.usage),
    };
    let mut file = format!("<div class=\"file\">{}</div>", esc(&c.file));
    if let Some(k) = &c.key_file {
        file.push_str(&format!("<div class=\"small\">key {}</div>", esc(k)));
    }
    if c.certificates_in_file > 1 {
        file.push_str(&format!(
            "<div class=\"small\">{} certificates in file</div>",
            c.certificates_in_file
        ));
    }
    let mut status = status_pill(c.status);
    if let (Some(n), true, None) = (&c.note, c.status != Status::Ok, &c.error) {
        status.push_str(&format!("<div class=\"small\">{}</div>", esc(n)));
    }
    let issuer = c.issuer.as_deref().map(esc).unwrap_or_else(|| "—".into());
    let class = row_class(c.status);
    let mut row = format!(
        "<tr class=\"{class}{}\"><td>{file}</td><td>{usage}</td><td>{subject}</td><td>{sans}</td>\
         <td class=\"small\">{issuer}</td><td class=\"nowrap\">{}</td><td class=\"nowrap\">{}</td><td>{status}</td></tr>",
        if c.error.is_some() { " joined" } else { "" },
        expiry_cell(c.not_after, c.status, now),
        esc(c.key_type.as_deref().unwrap_or("—"))
    );
    if let Some(e) = &c.error {
        row.push_str(&format!(
            "<tr class=\"{class} detail\"><td colspan=\"8\"><div class=\"err\">{}</div></td></tr>",
            esc(e)
        ));
    }
    row
}

fn certificates_body(r: &CertificatesReport) -> String {
    let now = OffsetDateTime::now_utc();
    let rl = &r.reload;
    let counters = format!(
        "{} successful, {} refused since start · serving generation {}",
        rl.successes, rl.failures, rl.generation
    );
    let banner = match &rl.last_error {
        Some(e) => format!(
            "<div class=\"banner bad\"><b>The last reload was refused</b>{}: {}<div class=\"small\">Still serving the certificates loaded {}. {counters}</div></div>",
            rl.last_attempt.map(|t| format!(" ({})", when(t))).unwrap_or_default(),
            esc(e),
            when(r.loaded_at)
        ),
        None => format!(
            "<div class=\"banner ok\"><b>{}</b> {}{} · {counters}</div>",
            if rl.successes > 0 { "Last reload succeeded" } else { "Loaded at start" },
            rl.last_success.map(when).unwrap_or_default(),
            rl.last_success
                .map(|t| format!(" ({} ago)", duration_text(now - t)))
                .unwrap_or_default()
        ),
    };
    let sm = &r.summary;
    let mut body = format!(
        "<h1>Certificates · node {}</h1><p class=\"sub\">Certs directory <span class=\"mono\">{}</span> · \
         warnings under {} days</p>{banner}<div class=\"cards\">{}{}{}{}</div>",
        r.node_id,
        esc(&r.certs_dir),
        moat_pki::certsdir::EXPIRY_WARNING_DAYS,
        card("Valid", &sm.ok.to_string(), "more than 30 days left"),
        card(
            "Expiring soon",
            &if sm.warning > 0 {
                format!("<span class=\"note-warn\">{}</span>", sm.warning)
            } else {
                "0".into()
            },
            "within 30 days, or stale CRLs"
        ),
        card(
            "Expired or revoked",
            &if sm.expired > 0 {
                format!("<span class=\"note-bad\">{}</span>", sm.expired)
            } else {
                "0".into()
            },
            "revoked, or not yet valid"
        ),
        card(
            "Broken",
            &if sm.error > 0 {
                format!("<span class=\"note-bad\">{}</span>", sm.error)
            } else {
                "0".into()
            },
            "unreadable, or key missing or not matching"
        ),
    );
    body.push_str(
        "<div class=\"panel\"><h2>Certificate files</h2><table><tr><th>File</th><th>Usage</th><th>Subject</th>\
         <th>Names (SANs)</th><th>Issuer</th><th>Expires</th><th>Key</th><th>Status</th></tr>",
    );
    for c in &r.certificates {
        body.push_str(&cert_row(c, now));
    }
    if r.certificates.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"small\">No certificate files.</td></tr>");
    }
    body.push_str("</table></div>");
    body.push_str("<div class=\"panel\"><h2>Revocation lists</h2><table><tr><th>File</th><th>Issuer</th><th>Updated</th><th>Next update</th><th>Revoked</th><th>Status</th></tr>");
    for c in &r.crls {
        let status = match (&c.error, c.status) {
            (Some(e), _) => format!("{}<div class=\"err\">{}</div>", pill("bad", "unusable"), esc(e)),
            (None, Status::Warning) => pill("warn", "stale: re-issue it"),
            _ => pill("ok", "ok"),
        };
        body.push_str(&format!(
            "<tr class=\"{}\"><td class=\"file\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{status}</td></tr>",
            row_class(c.status),
            esc(&c.file),
            esc(c.issuer.as_deref().unwrap_or("—")),
            c.this_update.map(date).unwrap_or_else(|| "—".into()),
            expiry_cell(c.next_update, c.status, now),
            c.revoked,
        ));
    }
    if r.crls.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"small\">No CRL files (<span class=\"mono\">moat cert revoke</span> writes them).</td></tr>");
    }
    body.push_str("</table></div>");
    if !r.skipped.is_empty() {
        body.push_str("<div class=\"panel\"><h2>Files not loaded</h2><table><tr><th>File</th><th>Why</th></tr>");
        for s in &r.skipped {
            body.push_str(&format!(
                "<tr><td class=\"file\">{}</td><td class=\"small\">{}</td></tr>",
                esc(&s.file),
                esc(&s.reason)
            ));
        }
        body.push_str("</table></div>");
    }
    body
}

/// `GET /certificates/{node}`: `local` (or this node's id) shows this
/// node's certificates; another node's are served by its own console.
pub(crate) async fn certificates(
    State(st): State<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let s = match require(&st, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ctx = &st.ctx;
    if node == "local" || node == ctx.node_id().to_string() {
        let r = report::certificates(ctx);
        let title = format!("Certificates · node {}", ctx.node_id());
        return page(
            &title,
            "certificates",
            Some(&s.user),
            ctx.node_id(),
            &certificates_body(&r),
        )
        .into_response();
    }
    let other = node
        .parse::<u64>()
        .ok()
        .and_then(|id| report::nodes(ctx, None).into_iter().find(|n| n.id == id));
    let (status, body) = match other {
        Some(n) => (
            StatusCode::OK,
            match &n.http_address {
                Some(a) => format!(
                    "<h1>Certificates · node {}</h1><div class=\"banner warn\">Node {} serves its certificates page itself: \
                     <a href=\"https://{}/certificates/local\">https://{}/certificates/local</a> (sign in there).</div>",
                    n.id,
                    n.id,
                    esc(a),
                    esc(a)
                ),
                None => format!(
                    "<h1>Certificates · node {}</h1><div class=\"banner warn\">Node {}'s console address is not known here.</div>",
                    n.id, n.id
                ),
            },
        ),
        None => (
            StatusCode::NOT_FOUND,
            format!("<h1>No node {}</h1><p class=\"sub\"><a href=\"/\">Back to the overview</a></p>", esc(&node)),
        ),
    };
    (
        status,
        page("Certificates", "certificates", Some(&s.user), ctx.node_id(), &body),
    )
        .into_response()
}

/// Anything else.
pub(crate) async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no such page: {}\n", uri.path()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_next() {
        assert_eq!(super::percent_encode("/a b?x=1&y"), "/a%20b%3Fx%3D1%26y");
    }
}
