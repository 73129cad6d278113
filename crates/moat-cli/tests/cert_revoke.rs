//! Revocation: `moat cert revoke` writes CRLs that openssl and rustls honour,
//! `cert list` shows them, and `--ocsp-url` puts an OCSP responder in leaves.

mod common;
use common::*;

use std::path::Path;
use std::sync::Arc;

use moat_pki::certsdir::CertsDir;
use moat_pki::inspect::read_cert_pem;

fn sh(script: &str, dir: &Path) {
    let out = std::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        script
    );
}

/// The serial of a certificate as openssl prints it (upper-case hex).
fn serial_of(cert: &Path) -> String {
    let out = ok(&openssl(&["x509", "-noout", "-serial", "-in", cert.to_str().unwrap()]));
    out.trim().strip_prefix("serial=").unwrap().to_string()
}

/// `openssl crl -text` of a CRL file, with whitespace collapsed to single spaces.
fn crl_text(path: &Path) -> String {
    let out = ok(&openssl(&["crl", "-noout", "-text", "-in", path.to_str().unwrap()]));
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `openssl verify -crl_check` of a certificate against ca.crt and ca.crl-like files.
fn verify_with_crl(ca: &Path, crl: &Path, cert: &Path) -> std::process::Output {
    openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        crl.to_str().unwrap(),
        "-CAfile",
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
    ])
}

/// stdout and stderr together (openssl verify reports errors on stderr).
fn both(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn list_json(s: &Scratch) -> serde_json::Value {
    let out = ok(&s.cert(&["list", "--format", "json"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn revoked_client_certificates_land_in_ca_crl_and_openssl_refuses_them() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    for user in ["alice", "bob", "carol"] {
        ok(&s.cert_ca(&["create-client", user]));
    }
    let crl = s.file("ca.crl");
    let (alice, bob, carol) = (
        s.file("client.alice.crt"),
        s.file("client.bob.crt"),
        s.file("client.carol.crt"),
    );
    let (alice_serial, bob_serial, carol_serial) = (serial_of(&alice), serial_of(&bob), serial_of(&carol));

    let out = ok(&s.cert_ca(&["revoke", alice.to_str().unwrap(), "--reason", "keyCompromise"]));
    assert!(out.contains(&format!("wrote {}", crl.display())), "{out}");
    assert!(out.contains(&alice_serial.to_lowercase()), "{out}");
    assert!(out.contains("CRL number 1, 1 revoked"), "{out}");
    assert_eq!(mode(&crl), 0o644);
    let text = crl_text(&crl);
    assert!(text.contains("Issuer: O = moat, CN = moat CA"), "{text}");
    assert!(text.contains("X509v3 CRL Number: 1"), "{text}");
    assert!(
        text.contains(&format!("Serial Number: {alice_serial} Revocation Date: ")),
        "{text}"
    );
    assert!(text.contains("X509v3 CRL Reason Code: Key Compromise"), "{text}");
    assert!(!text.contains(&bob_serial), "{text}");

    // A second revocation keeps the first entry and bumps the CRL number. A
    // bare file name is looked up in the certs directory.
    let out = ok(&s.cert_ca(&["revoke", "client.bob.crt", "--reason", "superseded"]));
    assert!(out.contains("CRL number 2, 2 revoked"), "{out}");
    let text = crl_text(&crl);
    assert!(text.contains("X509v3 CRL Number: 2"), "{text}");
    assert!(text.contains(&format!("Serial Number: {alice_serial}")), "{text}");
    assert!(text.contains(&format!("Serial Number: {bob_serial}")), "{text}");
    assert!(text.contains("Key Compromise") && text.contains("Superseded"), "{text}");
    assert!(!text.contains(&carol_serial), "{text}");

    // Revoking again is a no-op with a message, not an error.
    let before = std::fs::read(&crl).unwrap();
    let out = ok(&s.cert_ca(&["revoke", bob.to_str().unwrap(), "--reason", "keyCompromise"]));
    assert!(out.contains("already revoked") && out.contains("superseded"), "{out}");
    assert!(!out.contains("wrote"), "{out}");
    assert_eq!(std::fs::read(&crl).unwrap(), before);

    // openssl: revoked certificates fail, the others pass.
    for revoked in [&alice, &bob] {
        let v = verify_with_crl(&s.file("ca.crt"), &crl, revoked);
        assert!(!v.status.success());
        assert!(both(&v).contains("certificate revoked"), "{}", both(&v));
    }
    assert!(ok(&verify_with_crl(&s.file("ca.crt"), &crl, &carol)).contains("OK"));

    // The revoked certificates' files stay; nothing else was written.
    assert_eq!(
        listing(&s.certs()),
        [
            "ca.crl",
            "ca.crt",
            "client.alice.crt",
            "client.alice.key",
            "client.bob.crt",
            "client.bob.key",
            "client.carol.crt",
            "client.carol.key"
        ]
    );

    // By serial, in any usual spelling; the CRL of ca.crt by default.
    let colons: Vec<String> = carol_serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let out = ok(&s.cert_ca(&[
        "revoke",
        "--serial",
        &colons.join(":"),
        "--reason",
        "cessationofoperation",
    ]));
    assert!(out.contains("CRL number 3, 3 revoked"), "{out}");
    let text = crl_text(&crl);
    assert!(text.contains(&format!("Serial Number: {carol_serial}")), "{text}");
    assert!(text.contains("Cessation Of Operation"), "{text}");
    assert!(!verify_with_crl(&s.file("ca.crt"), &crl, &carol).status.success());

    // --refresh keeps every entry and moves the dates; --crl-lifetime sets nextUpdate.
    let out = ok(&s.cert_ca(&["revoke", "--refresh", "--crl-lifetime", "48h"]));
    assert!(out.contains("CRL number 4, 3 revoked"), "{out}");
    let json = list_json(&s);
    let entry = &json["crls"][0];
    assert_eq!(entry["revoked"], 3);
    assert_eq!(entry["crl_number"], "4");
    assert!(entry["error"].is_null(), "{entry}");
    let dir = CertsDir::load(&s.certs()).unwrap();
    let left = dir.crls[0].next_update.unwrap() - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(47) && left <= time::Duration::hours(48),
        "{left}"
    );
}

#[test]
fn refusals_write_nothing() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    ok(&s.cert_ca(&["create-client", "alice"]));
    let alice = s.file("client.alice.crt");
    let alice_path = alice.to_str().unwrap();

    // The wrong CA key.
    let other_key = s.path().join("safe/other.key");
    ok(&moat(&[
        "cert",
        "create-ca",
        "--certs-dir",
        s.path().join("other-certs").to_str().unwrap(),
        "--ca-key",
        other_key.to_str().unwrap(),
    ]));
    let before = snapshot(&s.certs());
    fails(
        &s.cert(&["revoke", alice_path, "--ca-key", other_key.to_str().unwrap()]),
        &["other.key", "does not match"],
    );
    assert_eq!(snapshot(&s.certs()), before);

    // No CA key at all, an unknown reason, a bad serial, nothing to revoke.
    fails(&s.cert(&["revoke", alice_path]), &["--ca-key"]);
    let out = s.cert_ca(&["revoke", alice_path, "--reason", "bored"]);
    assert!(
        !out.status.success() && stderr(&out).contains("keyCompromise"),
        "{}",
        stderr(&out)
    );
    fails(
        &s.cert_ca(&["revoke", "--serial", "xyz"]),
        &["invalid serial number", "hex"],
    );
    assert!(!s.cert_ca(&["revoke"]).status.success());
    // A root CA cannot be revoked by a CRL.
    fails(&s.cert_ca(&["revoke", "ca.crt"]), &["ca.crt", "self-signed"]);
    // A certificate from another CA.
    let stranger = s.path().join("other-certs/client.eve.crt");
    ok(&moat(&[
        "cert",
        "create-client",
        "eve",
        "--certs-dir",
        s.path().join("other-certs").to_str().unwrap(),
        "--ca-key",
        other_key.to_str().unwrap(),
    ]));
    fails(
        &s.cert_ca(&["revoke", stranger.to_str().unwrap()]),
        &["client.eve.crt", "not issued by the CA in", "--ca-cert"],
    );
    assert_eq!(snapshot(&s.certs()), before);

    // A corrupt existing CRL is refused, clearly, and left alone.
    let crl = s.file("ca.crl");
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64 at all!\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let before = snapshot(&s.certs());
    fails(
        &s.cert_ca(&["revoke", alice_path]),
        &["ca.crl", "existing CRL is unreadable", "move it away"],
    );
    std::fs::write(&crl, [0x30u8, 0x03, 0x02, 0x01, 0x01]).unwrap();
    fails(
        &s.cert_ca(&["revoke", alice_path]),
        &["ca.crl", "existing CRL is unreadable"],
    );
    std::fs::write(&crl, "").unwrap();
    fails(
        &s.cert_ca(&["revoke", alice_path]),
        &["ca.crl", "existing CRL is unreadable"],
    );
    // ... and so is a valid CRL of another CA.
    ok(&moat(&[
        "cert",
        "revoke",
        "--refresh",
        "--certs-dir",
        s.path().join("other-certs").to_str().unwrap(),
        "--ca-key",
        other_key.to_str().unwrap(),
    ]));
    std::fs::copy(s.path().join("other-certs/ca.crl"), &crl).unwrap();
    let before_foreign = snapshot(&s.certs());
    fails(
        &s.cert_ca(&["revoke", alice_path]),
        &["ca.crl", "does not belong to", "signature does not verify"],
    );
    assert_eq!(snapshot(&s.certs()), before_foreign);
    assert_ne!(before, before_foreign);
}

#[test]
fn client_ca_certificates_go_to_ca_client_crl() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    ok(&s.cert_ca(&["create-node", "localhost"]));
    let client_key = s.path().join("safe/ca-client.key");
    let ck = client_key.to_str().unwrap();
    ok(&s.cert(&["create-client-ca", "--ca-key", ck]));
    ok(&s.cert(&["create-client", "alice", "--ca-key", ck]));
    ok(&s.cert(&["create-client", "bob", "--ca-key", ck]));
    let alice = s.file("client.alice.crt");

    // The main CA key does not sign for the client CA.
    fails(
        &s.cert_ca(&["revoke", alice.to_str().unwrap()]),
        &["does not match", "ca-client.crt"],
    );
    assert!(!s.file("ca-client.crl").exists());

    let out = ok(&s.cert(&["revoke", alice.to_str().unwrap(), "--ca-key", ck]));
    assert!(out.contains("ca-client.crl"), "{out}");
    assert!(!s.file("ca.crl").exists());
    let text = crl_text(&s.file("ca-client.crl"));
    assert!(text.contains("CN = moat Client CA"), "{text}");
    assert!(
        text.contains(&format!("Serial Number: {}", serial_of(&alice))),
        "{text}"
    );
    let v = verify_with_crl(&s.file("ca-client.crt"), &s.file("ca-client.crl"), &alice);
    assert!(both(&v).contains("certificate revoked"), "{}", both(&v));

    // By serial with --client-ca.
    let bob = s.file("client.bob.crt");
    ok(&s.cert(&["revoke", "--serial", &serial_of(&bob), "--client-ca", "--ca-key", ck]));
    assert!(crl_text(&s.file("ca-client.crl")).contains(&serial_of(&bob)));

    // The node certificate, from ca.crt, goes to ca.crl.
    ok(&s.cert_ca(&["revoke", "node.crt"]));
    assert!(crl_text(&s.file("ca.crl")).contains(&serial_of(&s.file("node.crt"))));

    let json = list_json(&s);
    let crls = json["crls"].as_array().unwrap();
    let names: Vec<&str> = crls.iter().map(|c| c["crl_file"].as_str().unwrap()).collect();
    assert_eq!(names, ["ca-client.crl", "ca.crl"]);
    assert_eq!(crls[0]["revoked"], 2);
    assert_eq!(crls[0]["issuer_common_name"], "moat Client CA");
    assert_eq!(crls[1]["revoked"], 1);
    assert!(crls.iter().all(|c| c["error"].is_null()), "{json}");
}

#[test]
fn cert_list_shows_crls_and_flags_foreign_ones() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    ok(&s.cert_ca(&["create-client", "alice"]));
    ok(&s.cert_ca(&["revoke", "client.alice.crt", "--reason", "keyCompromise"]));
    ok(&s.cert_ca(&["revoke", "client.root.crt"]));

    // A CRL signed by a foreign CA with the same name, and one by an unrelated CA.
    let other = Scratch::new();
    ok(&other.cert_ca(&["create-ca"]));
    ok(&other.cert_ca(&["revoke", "--refresh"]));
    std::fs::copy(other.file("ca.crl"), s.file("foreign.crl")).unwrap();
    sh(
        r#"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o.key -subj "/CN=Other CA" -days 30 -out o.crt 2>/dev/null
        printf '' > index.txt
        printf '[ca]\ndefault_ca=x\n[x]\ndatabase=index.txt\ndefault_md=sha256\ncrlnumber=crlnumber\n' > ca.cnf
        echo 01 > crlnumber
        openssl ca -config ca.cnf -gencrl -keyfile o.key -cert o.crt -crldays 7 -out unrelated.crl 2>/dev/null
        openssl crl -in unrelated.crl -outform DER -out unrelated.der
        "#,
        other.path(),
    );
    std::fs::copy(other.path().join("unrelated.der"), s.file("unrelated.crl")).unwrap();
    std::fs::write(s.file("zz-garbage.crl"), "hello").unwrap();

    let json = list_json(&s);
    let crls = json["crls"].as_array().unwrap();
    let by_name = |n: &str| {
        crls.iter()
            .find(|c| c["crl_file"] == n)
            .unwrap_or_else(|| panic!("{n}: {json}"))
    };
    assert_eq!(crls.len(), 4, "{json}");
    let ca = by_name("ca.crl");
    assert_eq!(ca["revoked"], 2);
    assert!(ca["error"].is_null());
    assert_eq!(ca["usage"], "CRL");
    assert_eq!(ca["issuer"], "O=moat, CN=moat CA");
    assert_eq!(ca["notes"], "issuer: moat CA; revoked: 2");
    assert_eq!(ca["revoked_serials"].as_array().unwrap().len(), 2);
    let foreign = by_name("foreign.crl");
    assert!(
        foreign["error"].as_str().unwrap().contains("signature does not verify"),
        "{foreign}"
    );
    let unrelated = by_name("unrelated.crl");
    assert!(
        unrelated["error"]
            .as_str()
            .unwrap()
            .contains("is not a CA of this directory"),
        "{unrelated}"
    );
    assert_eq!(unrelated["issuer"], "CN=Other CA");
    assert!(by_name("zz-garbage.crl")["error"]
        .as_str()
        .unwrap()
        .contains("neither PEM nor a DER CRL"));

    // The table: CRL rows after the certificates.
    let tsv = ok(&s.cert(&["list", "--format", "tsv"]));
    let rows: Vec<&str> = tsv.lines().skip(2).collect();
    let first_crl = rows.iter().position(|r| r.starts_with("CRL\t")).unwrap();
    assert!(rows[..first_crl].iter().all(|r| !r.starts_with("CRL")), "{tsv}");
    assert_eq!(rows.len() - first_crl, 4, "{tsv}");
    let ca_row = rows.iter().find(|r| r.starts_with("CRL\tca.crl\t")).unwrap();
    let cells: Vec<&str> = ca_row.split('\t').collect();
    assert_eq!(cells[2], "");
    assert!(cells[3].starts_with('2') && cells[3].len() == 10, "{ca_row}");
    assert_eq!(cells[4], "issuer: moat CA; revoked: 2");
    assert_eq!(cells.get(5).copied().unwrap_or(""), "");

    // The library view the TLS layer uses.
    let dir = CertsDir::load(&s.certs()).unwrap();
    assert_eq!(dir.crls.len(), 4);
    assert_eq!(dir.valid_crls().len(), 1);
    assert!(dir.crls[0].is_valid() && dir.crls[0].path.ends_with("ca.crl"));
}

/// rustls (the TLS layer's verifier) refuses a revoked client certificate
/// with the CRL moat wrote, and accepts the others.
#[test]
fn rustls_honours_the_crl() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    ok(&s.cert_ca(&["create-client", "alice"]));
    ok(&s.cert_ca(&["revoke", "client.alice.crt", "--reason", "keyCompromise"]));
    let dir = CertsDir::load(&s.certs()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in read_cert_pem(&s.file("ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(dir.valid_crls())
        .build()
        .unwrap();
    let verifier: &dyn rustls::server::danger::ClientCertVerifier = verifier.as_ref();
    let now = rustls::pki_types::UnixTime::now();
    let alice = read_cert_pem(&s.file("client.alice.crt")).unwrap();
    let err = verifier.verify_client_cert(&alice[0], &[], now).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
        ),
        "{err:?}"
    );
    let root = read_cert_pem(&s.file("client.root.crt")).unwrap();
    verifier.verify_client_cert(&root[0], &[], now).unwrap();
}

/// A CA made by openssl (SHA-1 key identifiers): the CRL's Authority Key
/// Identifier must match it, or openssl ignores the CRL. A CA without cRLSign
/// is refused.
#[test]
fn openssl_made_cas() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.certs()).unwrap();
    sh(
        r#"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout safe-ca.key -subj "/O=Org/CN=Org Root" -days 3660 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out certs/ca.crt 2>/dev/null
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout nocrl.key -subj "/CN=No CRL CA" -days 3660 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out nocrl.crt 2>/dev/null
        "#,
        s.path(),
    );
    let key = s.path().join("safe-ca.key");
    let key = key.to_str().unwrap();
    ok(&s.cert(&["create-client", "alice", "--ca-key", key]));
    ok(&s.cert(&["create-client", "bob", "--ca-key", key]));
    ok(&s.cert(&["revoke", "client.alice.crt", "--ca-key", key]));
    let crl = s.file("ca.crl");
    let ski = ok(&openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectKeyIdentifier",
        "-in",
        s.file("ca.crt").to_str().unwrap(),
    ]));
    let ski = ski.lines().nth(1).unwrap().trim().to_string();
    let text = crl_text(&crl);
    assert!(
        text.contains(&format!("X509v3 Authority Key Identifier: {ski}")),
        "{ski} / {text}"
    );
    let v = verify_with_crl(&s.file("ca.crt"), &crl, &s.file("client.alice.crt"));
    assert!(both(&v).contains("certificate revoked"), "{}", both(&v));
    assert!(ok(&verify_with_crl(&s.file("ca.crt"), &crl, &s.file("client.bob.crt"))).contains("OK"));

    let nocrl = s.path().join("nocrl.crt");
    let nocrl_key = s.path().join("nocrl.key");
    ok(&s.cert(&[
        "create-client",
        "carol",
        "--ca-cert",
        nocrl.to_str().unwrap(),
        "--ca-key",
        nocrl_key.to_str().unwrap(),
    ]));
    let before = snapshot(&s.certs());
    fails(
        &s.cert(&[
            "revoke",
            "client.carol.crt",
            "--ca-cert",
            nocrl.to_str().unwrap(),
            "--ca-key",
            nocrl_key.to_str().unwrap(),
        ]),
        &["nocrl.crt", "cRLSign"],
    );
    assert_eq!(snapshot(&s.certs()), before);
}

#[test]
fn ocsp_url_goes_into_leaf_certificates() {
    let s = Scratch::new();
    let url = "http://127.0.0.1:8888/ocsp";
    ok(&s.cert_ca(&["create-ca"]));
    let out = ok(&s.cert_ca(&["create-node", "localhost", "--ocsp-url", url]));
    assert!(out.contains(&format!("OCSP {url}")), "{out}");
    ok(&s.cert_ca(&["create-client", "root", "--ocsp-url", url]));
    ok(&s.cert_ca(&["create-ui", "localhost", "--ocsp-url", url]));
    ok(&s.cert_ca(&["create-client", "plain"]));
    for f in ["node.crt", "client.root.crt", "ui.crt"] {
        let text = x509_text(&s.file(f));
        assert!(text.contains(&format!("OCSP - URI:{url}")), "{f}: {text}");
        // Non-critical.
        assert!(text.contains("Authority Information Access: \n"), "{f}: {text}");
    }
    assert!(!x509_text(&s.file("client.plain.crt")).contains("Authority Information Access"));
    // The CA never gets one, and the flag does not exist on create-ca.
    assert!(!s.cert_ca(&["create-ui-ca", "--ocsp-url", url]).status.success());

    // sign-csr.
    let csr_side = Scratch::new();
    ok(&csr_side.cert(&["create-csr", "client", "dave"]));
    let csr = csr_side.file("client.dave.csr");
    ok(&s.cert_ca(&[
        "sign-csr",
        csr.to_str().unwrap(),
        "--profile",
        "client",
        "--user",
        "dave",
        "--ocsp-url",
        "http://ocsp.example.com/",
    ]));
    let text = x509_text(&csr_side.file("client.dave.crt"));
    assert!(text.contains("OCSP - URI:http://ocsp.example.com/"), "{text}");

    // cert list --format json shows it.
    let json = list_json(&s);
    let node = json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cert_file"] == "node.crt")
        .unwrap();
    assert_eq!(node["certificates"][0]["ocsp_urls"][0], url);

    // Bad URLs are refused before anything is written.
    let before = snapshot(&s.certs());
    fails(
        &s.cert_ca(&["create-client", "eve", "--ocsp-url", "ftp://x/"]),
        &["invalid OCSP responder URL", "http://"],
    );
    fails(
        &s.cert_ca(&["create-client", "eve", "--ocsp-url", "http://a b/"]),
        &["invalid OCSP responder URL"],
    );
    assert_eq!(snapshot(&s.certs()), before);

    // openssl's OCSP client finds the responder URL in the certificate.
    let uri = ok(&openssl(&[
        "x509",
        "-noout",
        "-ocsp_uri",
        "-in",
        s.file("node.crt").to_str().unwrap(),
    ]));
    assert_eq!(uri.trim(), url);
}
