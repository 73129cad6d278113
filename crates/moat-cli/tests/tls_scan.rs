//! The SQL port as a TLS scanner sees it: `sslscan` against a real node
//! (ECDSA and RSA node certificates; PostgreSQL SSLRequest and direct TLS),
//! plus a few hand-made ClientHellos for what sslscan's OpenSSL cannot test
//! (compression) and as a second opinion on old versions and weak suites.
//!
//! Needs `sslscan` (Debian package `sslscan`; `scripts/test.sh` installs it).
//! The full reproducible scan, testssl.sh included, is `scripts/scan.sh`.

mod node_support;
use node_support::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

// ---------------------------------------------------------------------------
// sslscan

/// Runs sslscan (XML on stdout) against 127.0.0.1:port.
fn sslscan(port: u16, starttls_psql: bool) -> String {
    let mut cmd = Command::new("sslscan");
    cmd.args(["--no-colour", "--xml=-"]);
    if starttls_psql {
        cmd.arg("--starttls-psql");
    }
    cmd.arg(format!("127.0.0.1:{port}"));
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run sslscan ({e}): this test needs it; install the Debian package with \
             `apt-get install sslscan` (scripts/test.sh does)"
        ),
    };
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && xml.contains("<ssltest"),
        "sslscan failed ({}):\n{xml}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    xml
}

/// The value of `name="..."` in one XML element line.
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// The lines of the XML that are `<tag ...>` elements.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    xml.lines().map(str::trim).filter(|l| l.starts_with(&open)).collect()
}

/// Asserts everything the SQL port promises, on one sslscan report.
/// `key_exchange_auth` is "ECDSA" or "RSA": the TLS 1.2 suites must match the node key.
fn check_report(what: &str, xml: &str, key_exchange_auth: &str) {
    let ctx = |msg: String| format!("{what}: {msg}\n--- sslscan report ---\n{xml}");

    // Protocols: every one must have been tested; only 1.2 and 1.3 on.
    let protocols = elements(xml, "protocol");
    let enabled = |ty: &str, ver: &str| -> bool {
        let p = protocols
            .iter()
            .find(|l| attr(l, "type") == Some(ty) && attr(l, "version") == Some(ver))
            .unwrap_or_else(|| panic!("{}", ctx(format!("sslscan did not test {ty} {ver}"))));
        attr(p, "enabled") == Some("1")
    };
    for (ty, ver) in [("ssl", "2"), ("ssl", "3"), ("tls", "1.0"), ("tls", "1.1")] {
        assert!(!enabled(ty, ver), "{}", ctx(format!("{ty} {ver} is accepted")));
    }
    assert!(enabled("tls", "1.3"), "{}", ctx("TLS 1.3 is not enabled".into()));
    assert!(enabled("tls", "1.2"), "{}", ctx("TLS 1.2 is not enabled".into()));

    // Cipher suites: AEAD only, forward secrecy only (TLS 1.3 or ECDHE).
    let ciphers = elements(xml, "cipher");
    assert!(!ciphers.is_empty(), "{}", ctx("no cipher suite accepted".into()));
    let mut tls13 = 0;
    for c in &ciphers {
        let name = attr(c, "cipher").unwrap_or_default();
        let version = attr(c, "sslversion").unwrap_or_default();
        let aead = name.contains("GCM") || name.contains("CHACHA20-POLY1305") || name.contains("CHACHA20_POLY1305");
        assert!(aead, "{}", ctx(format!("non-AEAD suite accepted: {version} {name}")));
        match version {
            "TLSv1.3" => {
                tls13 += 1;
                assert!(name.starts_with("TLS_"), "{}", ctx(format!("odd TLS 1.3 suite {name}")));
            }
            "TLSv1.2" => {
                let prefix = format!("ECDHE-{key_exchange_auth}-");
                assert!(
                    name.starts_with(&prefix),
                    "{}",
                    ctx(format!(
                        "TLS 1.2 suite without ECDHE (or not {key_exchange_auth}): {name}"
                    ))
                );
            }
            other => panic!("{}", ctx(format!("suite accepted on {other}: {name}"))),
        }
        if let Some(bits) = attr(c, "bits").and_then(|b| b.parse::<u32>().ok()) {
            assert!(bits >= 128, "{}", ctx(format!("{name} has {bits}-bit encryption")));
        }
    }
    assert!(tls13 > 0, "{}", ctx("no TLS 1.3 suite accepted".into()));

    // Key-exchange groups: nothing under 128-bit security.
    for g in elements(xml, "group") {
        let bits: u32 = attr(g, "bits").and_then(|b| b.parse().ok()).unwrap_or(0);
        assert!(bits >= 128, "{}", ctx(format!("weak group offered: {g}")));
    }

    // Renegotiation: tested, and never the insecure kind.
    let reneg = elements(xml, "renegotiation");
    let reneg = reneg
        .first()
        .unwrap_or_else(|| panic!("{}", ctx("sslscan did not test renegotiation".into())));
    if attr(reneg, "supported") == Some("1") {
        assert_eq!(
            attr(reneg, "secure"),
            Some("1"),
            "{}",
            ctx("insecure renegotiation supported".into())
        );
    }

    // Compression (sslscan reports it only when its OpenSSL was built with
    // zlib; the hand-made hellos below always test it) and Heartbleed.
    for c in elements(xml, "compression") {
        assert_ne!(
            attr(c, "supported"),
            Some("1"),
            "{}",
            ctx("TLS compression supported".into())
        );
    }
    for h in elements(xml, "heartbleed") {
        assert_eq!(attr(h, "vulnerable"), Some("0"), "{}", ctx(format!("heartbleed: {h}")));
    }
}

// ---------------------------------------------------------------------------
// Hand-made ClientHellos

#[derive(Debug)]
enum Reply {
    /// The server answered with a ServerHello.
    ServerHello {
        version: u16,
        random: Vec<u8>,
        cipher: u16,
        compression: u8,
        extensions: Vec<(u16, Vec<u8>)>,
    },
    /// The server refused with an alert (level, description).
    Alert(u8, u8),
    /// The server closed the connection without a word.
    Closed,
}

fn u16be(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut v = u16be(body.len() as u16).to_vec();
    v.extend_from_slice(body);
    v
}

fn extension(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = u16be(ty).to_vec();
    v.extend(with_len16(body));
    v
}

/// A TLS 1.2-style ClientHello (no supported_versions extension, so the
/// version is `client_version`), in one record.
fn client_hello(client_version: u16, suites: &[u16], compression: &[u8]) -> Vec<u8> {
    let mut body = u16be(client_version).to_vec();
    body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
    body.push(0); // no session id
    body.extend(with_len16(&suites.iter().flat_map(|s| u16be(*s)).collect::<Vec<_>>()));
    body.push(compression.len() as u8);
    body.extend_from_slice(compression);
    let mut exts = Vec::new();
    // supported_groups: x25519, secp256r1, secp384r1.
    exts.extend(extension(0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17, 0x00, 0x18])));
    // ec_point_formats: uncompressed.
    exts.extend(extension(0x000b, &[1, 0]));
    // signature_algorithms.
    let sigs: Vec<u8> = [0x0403u16, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501, 0x0807]
        .iter()
        .flat_map(|s| u16be(*s))
        .collect();
    exts.extend(extension(0x000d, &with_len16(&sigs)));
    // extended_master_secret.
    exts.extend(extension(0x0017, &[]));
    // renegotiation_info (RFC 5746), initial handshake: empty.
    exts.extend(extension(0xff01, &[0]));
    body.extend(with_len16(&exts));

    let mut hs = vec![1u8]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&hs));
    record
}

/// Sends the PostgreSQL SSLRequest, then `hello`, and reads the first answer.
fn probe(port: u16, hello: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer[0], b'S', "the node refused the SSLRequest");
    s.write_all(hello).unwrap();
    let mut header = [0u8; 5];
    if s.read_exact(&mut header).is_err() {
        return Reply::Closed;
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    match header[0] {
        0x15 => Reply::Alert(body[0], body[1]),
        0x16 => {
            assert_eq!(body[0], 2, "first handshake message is not a ServerHello: {body:?}");
            let b = &body[4..];
            let version = u16::from_be_bytes([b[0], b[1]]);
            let sid_len = b[34] as usize;
            let mut i = 35 + sid_len;
            let cipher = u16::from_be_bytes([b[i], b[i + 1]]);
            let compression = b[i + 2];
            i += 3;
            let mut extensions = Vec::new();
            if i + 2 <= b.len() {
                let end = i + 2 + u16::from_be_bytes([b[i], b[i + 1]]) as usize;
                i += 2;
                while i + 4 <= end {
                    let ty = u16::from_be_bytes([b[i], b[i + 1]]);
                    let l = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                    extensions.push((ty, b[i + 4..i + 4 + l].to_vec()));
                    i += 4 + l;
                }
            }
            Reply::ServerHello {
                version,
                random: b[2..34].to_vec(),
                cipher,
                compression,
                extensions,
            }
        }
        other => panic!("unexpected record type {other:#x}"),
    }
}

const AEAD_ECDHE: &[u16] = &[0xc02b, 0xc02c, 0xcca9, 0xc02f, 0xc030, 0xcca8];
/// Every kind of suite the node must refuse: CBC with and without ECDHE,
/// static RSA (also with GCM: no forward secrecy), 3DES, RC4, NULL, DHE.
const WEAK: &[u16] = &[
    0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc024, 0xc027, 0xc028, 0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d,
    0x000a, 0xc012, 0x0005, 0x0004, 0x0001, 0x0002, 0x003b, 0x0033, 0x0039, 0x009e, 0x009f, 0x0016,
];

/// Asserts that the server refused the hello with a fatal alert (or closed).
fn assert_refused(what: &str, reply: Reply) {
    match reply {
        Reply::Alert(level, description) => {
            eprintln!("{what}: refused with alert {description}");
            assert_eq!(level, 2, "{what}: refused with a non-fatal alert {description}");
        }
        Reply::Closed => {}
        Reply::ServerHello { .. } => panic!("{what} was answered: {reply:?}"),
    }
}

fn hand_made_hellos(port: u16) {
    // TLS 1.0 and 1.1 are refused, whatever the suites.
    for (version, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        let suites: Vec<u16> = AEAD_ECDHE.iter().chain(WEAK).copied().collect();
        assert_refused(name, probe(port, &client_hello(version, &suites, &[0])));
    }
    // TLS 1.2 with only non-AEAD or non-forward-secret suites is refused.
    assert_refused("weak-only TLS 1.2", probe(port, &client_hello(0x0303, WEAK, &[0])));
    // A client that insists on DEFLATE gets no connection.
    assert_refused(
        "DEFLATE-only TLS 1.2",
        probe(port, &client_hello(0x0303, AEAD_ECDHE, &[1])),
    );
    // Offered DEFLATE and null: the server picks null, an AEAD + ECDHE suite,
    // signals secure renegotiation (RFC 5746), extended master secret and,
    // as TLS 1.3 is on, the downgrade sentinel.
    let suites: Vec<u16> = WEAK.iter().chain(AEAD_ECDHE).copied().collect();
    match probe(port, &client_hello(0x0303, &suites, &[1, 0])) {
        Reply::ServerHello {
            version,
            random,
            cipher,
            compression,
            extensions,
        } => {
            assert_eq!(version, 0x0303, "negotiated version");
            // TLS 1.3's downgrade protection (RFC 8446 4.1.3), which is why the
            // missing TLS_FALLBACK_SCSV (RFC 7507) that sslscan reports is moot.
            assert_eq!(&random[24..], b"DOWNGRD\x01", "no TLS 1.3 downgrade sentinel");
            assert_eq!(compression, 0, "the server chose TLS compression");
            assert!(AEAD_ECDHE.contains(&cipher), "the server chose suite {cipher:#06x}");
            let reneg = extensions.iter().find(|(t, _)| *t == 0xff01);
            assert_eq!(
                reneg.map(|(_, b)| b.as_slice()),
                Some(&[0u8][..]),
                "renegotiation_info: {extensions:?}"
            );
            assert!(
                extensions.iter().any(|(t, _)| *t == 0x0017),
                "no extended_master_secret: {extensions:?}"
            );
        }
        other => panic!("a sound TLS 1.2 ClientHello was refused: {other:?}"),
    }
}

// ---------------------------------------------------------------------------

#[test]
fn sql_port_with_ecdsa_node_cert_passes_sslscan() {
    let n = NodeProc::start(&[]);
    check_report("ECDSA node, SSLRequest", &sslscan(n.port, true), "ECDSA");
    check_report("ECDSA node, direct TLS", &sslscan(n.port, false), "ECDSA");
    hand_made_hellos(n.port);
    // The node still serves a real client after the scans.
    let out = n.psql("SELECT 1");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn sql_port_with_rsa_node_cert_passes_sslscan() {
    let mut n = NodeProc::start(&[]);
    n.kill9();
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["cert", "create-node", "--overwrite", "--key-type", "rsa"])
        .args(["--certs-dir", &path_str(&n.certs())])
        .args(["--ca-key", &path_str(&n.tmp.path().join("ca.key"))])
        .args(["localhost", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    n.spawn(&[]);
    check_report("RSA node, SSLRequest", &sslscan(n.port, true), "RSA");
    hand_made_hellos(n.port);
    let out = n.psql("SELECT 1");
    assert!(out.status.success(), "{}", text(&out));
}

/// The checks themselves: a sound report passes, and each kind of weakness
/// in an sslscan report is caught.
#[test]
fn report_checks_catch_each_weakness() {
    let good = r#"<ssltest host="127.0.0.1" port="1">
  <protocol type="ssl" version="2" enabled="0" />
  <protocol type="ssl" version="3" enabled="0" />
  <protocol type="tls" version="1.0" enabled="0" />
  <protocol type="tls" version="1.1" enabled="0" />
  <protocol type="tls" version="1.2" enabled="1" />
  <protocol type="tls" version="1.3" enabled="1" />
  <renegotiation supported="0" secure="0" />
  <heartbleed sslversion="TLSv1.3" vulnerable="0" />
  <cipher status="preferred" sslversion="TLSv1.3" bits="128" cipher="TLS_AES_128_GCM_SHA256" id="0x1301" />
  <cipher status="accepted" sslversion="TLSv1.3" bits="256" cipher="TLS_CHACHA20_POLY1305_SHA256" id="0x1303" />
  <cipher status="preferred" sslversion="TLSv1.2" bits="128" cipher="ECDHE-ECDSA-AES128-GCM-SHA256" id="0xC02B" />
  <cipher status="accepted" sslversion="TLSv1.2" bits="256" cipher="ECDHE-ECDSA-CHACHA20-POLY1305" id="0xCCA9" />
  <group sslversion="TLSv1.3" bits="128" name="x25519" id="0x001d" />
 </ssltest>"#;
    check_report("good", good, "ECDSA");
    let cbc =
        r#"<cipher status="accepted" sslversion="TLSv1.2" bits="128" cipher="ECDHE-ECDSA-AES128-SHA" id="0xC009" />"#;
    let no_fs = r#"<cipher status="accepted" sslversion="TLSv1.2" bits="128" cipher="AES128-GCM-SHA256" id="0x9C" />"#;
    let bad: Vec<(&str, String)> = vec![
        ("TLS 1.0", good.replace(r#""1.0" enabled="0""#, r#""1.0" enabled="1""#)),
        ("SSLv3", good.replace(r#""3" enabled="0""#, r#""3" enabled="1""#)),
        (
            "TLS 1.1 untested",
            good.replace(r#"<protocol type="tls" version="1.1" enabled="0" />"#, ""),
        ),
        (
            "no TLS 1.3",
            good.replace(r#""1.3" enabled="1""#, r#""1.3" enabled="0""#),
        ),
        ("CBC suite", good.replace("</ssltest>", &format!("{cbc}\n</ssltest>"))),
        (
            "no forward secrecy",
            good.replace("</ssltest>", &format!("{no_fs}\n</ssltest>")),
        ),
        (
            "RSA suite on ECDSA",
            good.replace("ECDHE-ECDSA-AES128", "ECDHE-RSA-AES128"),
        ),
        (
            "insecure renegotiation",
            good.replace(r#"supported="0" secure="0""#, r#"supported="1" secure="0""#),
        ),
        (
            "renegotiation untested",
            good.replace(r#"<renegotiation supported="0" secure="0" />"#, ""),
        ),
        (
            "compression",
            good.replace("</ssltest>", "<compression supported=\"1\" />\n</ssltest>"),
        ),
        ("heartbleed", good.replace(r#"vulnerable="0""#, r#"vulnerable="1""#)),
    ];
    for (what, xml) in bad {
        let caught = std::panic::catch_unwind(|| check_report(what, &xml, "ECDSA")).is_err();
        assert!(caught, "a report with {what} passed the checks");
    }
}
