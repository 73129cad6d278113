//! The pages' frame: escaping, the layout with its embedded style sheet,
//! and small pieces (status pills). No scripts, no external assets.

use axum::response::Html;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A status pill: `kind` is `ok`, `warn`, `bad` or `muted`.
pub fn pill(kind: &str, text: &str) -> String {
    format!("<span class=\"pill {kind}\">{}</span>", esc(text))
}

const CSS: &str = r#"
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f4f6f9; --card:#fff;
  --brand:#14532d; --accent:#15803d; --ok-bg:#dcfce7; --ok:#166534; --warn-bg:#fef3c7; --warn:#92400e;
  --bad-bg:#fee2e2; --bad:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color:var(--ink); background:var(--bg); }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
header.top { background:linear-gradient(90deg,#0f3d22,#14532d); color:#fff; }
header.top .in { max-width:1240px; margin:0 auto; padding:0 24px; display:flex; align-items:center; gap:28px; height:56px; }
.brand { font-weight:700; font-size:18px; letter-spacing:.3px; color:#fff; display:flex; align-items:center; gap:10px; }
.brand .mark { width:26px; height:26px; border-radius:7px; background:#fff; color:#14532d; display:grid;
  place-items:center; font-size:15px; font-weight:800; }
nav a { color:#d1fae5; padding:17px 2px; margin-right:18px; border-bottom:3px solid transparent; }
nav a.on { color:#fff; border-bottom-color:#86efac; } nav a:hover { color:#fff; text-decoration:none; }
.who { margin-left:auto; display:flex; align-items:center; gap:12px; color:#d1fae5; font-size:13px; }
.who form { margin:0; }
.who button { background:transparent; color:#fff; border:1px solid #86efac; border-radius:6px; padding:4px 12px;
  font:inherit; cursor:pointer; }
main { max-width:1240px; margin:0 auto; padding:24px; }
h1 { font-size:22px; margin:4px 0 4px; } h2 { font-size:16px; margin:0 0 12px; }
.sub { color:var(--muted); margin:0 0 20px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(220px,1fr)); gap:16px; margin-bottom:20px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px;
  box-shadow:0 1px 2px rgba(16,24,40,.05); }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .v { font-size:22px; font-weight:650; margin-top:4px; }
.card .d { color:var(--muted); font-size:13px; margin-top:2px; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:10px; margin-bottom:20px;
  box-shadow:0 1px 2px rgba(16,24,40,.05); overflow:hidden; }
.panel h2 { padding:14px 18px 0; }
table { width:100%; border-collapse:collapse; }
th { text-align:left; font-size:12px; text-transform:uppercase; letter-spacing:.5px; color:var(--muted);
  font-weight:600; padding:10px 14px; border-bottom:1px solid var(--line); background:#fafbfc; }
td { padding:11px 14px; border-bottom:1px solid var(--line); vertical-align:top; }
tr:last-child td { border-bottom:0; }
tr.joined td { border-bottom:0; padding-bottom:2px; }
tr.detail td { padding-top:0; }
tr.detail .err { margin:0 0 2px; }
td.nowrap, .nowrap { white-space:nowrap; }
tr.warn td:first-child { box-shadow: inset 4px 0 0 #f59e0b; }
tr.bad td:first-child { box-shadow: inset 4px 0 0 #dc2626; }
.file { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight:600; }
.small { font-size:12px; color:var(--muted); }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:12px; }
.chip { display:inline-block; background:#eef2f7; border-radius:5px; padding:0 6px; margin:1px 3px 1px 0;
  font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:12px; }
.pill { display:inline-block; border-radius:999px; padding:1px 10px; font-size:12px; font-weight:600; white-space:nowrap; }
.pill.ok { background:var(--ok-bg); color:var(--ok); } .pill.warn { background:var(--warn-bg); color:var(--warn); }
.pill.bad { background:var(--bad-bg); color:var(--bad); } .pill.muted { background:#eef2f7; color:var(--muted); }
.err { color:var(--bad); font-size:13px; margin-top:4px; }
.note-warn { color:var(--warn); font-weight:600; } .note-bad { color:var(--bad); font-weight:600; }
.banner { border-radius:10px; padding:12px 16px; margin-bottom:20px; border:1px solid; }
.banner.ok { background:#f0fdf4; border-color:#bbf7d0; color:var(--ok); }
.banner.bad { background:#fef2f2; border-color:#fecaca; color:var(--bad); }
.banner.warn { background:#fffbeb; border-color:#fde68a; color:var(--warn); }
.login { max-width:380px; margin:72px auto; }
.login .card { padding:28px; }
.login h1 { margin-bottom:2px; }
label { display:block; font-weight:600; margin:14px 0 4px; }
input[type=text], input[type=password] { width:100%; padding:9px 11px; border:1px solid #cbd5e1; border-radius:7px; font:inherit; }
button.primary { margin-top:20px; width:100%; padding:10px; background:var(--accent); color:#fff; border:0;
  border-radius:7px; font:inherit; font-weight:600; cursor:pointer; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:8px 0 28px; }
"#;

/// A whole page. `nav` is the active tab (`overview`, `certificates`) or
/// empty for the login page; `user` shows the logout button.
pub fn page(title: &str, nav: &str, user: Option<&str>, node_id: u64, body: &str) -> Html<String> {
    let tab = |id: &str, href: &str, text: &str| {
        format!(
            "<a href=\"{href}\" class=\"{}\">{text}</a>",
            if id == nav { "on" } else { "" }
        )
    };
    let navigation = if user.is_some() {
        format!(
            "<nav>{}{}{}</nav>",
            tab("overview", "/", "Overview"),
            tab("certificates", "/certificates/local", "Certificates"),
            tab("metrics", "/_status/vars", "Metrics")
        )
    } else {
        String::new()
    };
    let who = match user {
        Some(u) => format!(
            "<div class=\"who\">node {node_id} · signed in as <b>{}</b>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form></div>",
            esc(u)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · moat console</title><style>{CSS}</style></head><body>\
         <header class=\"top\"><div class=\"in\"><a class=\"brand\" href=\"/\"><span class=\"mark\">m</span>moat</a>\
         {navigation}{who}</div></header><main>{body}</main>\
         <footer>moat {} · CockroachDB's transport-security model</footer></body></html>",
        esc(title),
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
