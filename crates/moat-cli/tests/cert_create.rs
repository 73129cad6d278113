//! `moat cert create-*`: every key type, checked with the openssl CLI.

mod common;
use common::*;

#[test]
fn every_key_type_makes_a_directory_openssl_accepts() {
    for kt in KEY_TYPES {
        let s = Scratch::new();
        s.standard_dir(kt);
        ok(&s.cert_ca(&["create-ui", "--key-type", kt, "console.example.com", "127.0.0.1"]));
        let ca = s.file("ca.crt");
        let ca = ca.to_str().unwrap();
        let node = s.file("node.crt");
        let client = s.file("client.root.crt");
        let ui = s.file("ui.crt");

        // Chains and purposes.
        let v = ok(&openssl(&[
            "verify",
            "-CAfile",
            ca,
            "-purpose",
            "sslserver",
            node.to_str().unwrap(),
        ]));
        assert!(v.contains(": OK"), "{kt}: {v}");
        ok(&openssl(&[
            "verify",
            "-CAfile",
            ca,
            "-purpose",
            "sslclient",
            node.to_str().unwrap(),
        ]));
        ok(&openssl(&[
            "verify",
            "-CAfile",
            ca,
            "-purpose",
            "sslclient",
            client.to_str().unwrap(),
        ]));
        ok(&openssl(&[
            "verify",
            "-CAfile",
            ca,
            "-purpose",
            "sslserver",
            ui.to_str().unwrap(),
        ]));
        // A client certificate is not a server certificate, nor the UI one a client.
        assert!(
            !openssl(&[
                "verify",
                "-CAfile",
                ca,
                "-purpose",
                "sslserver",
                client.to_str().unwrap()
            ])
            .status
            .success(),
            "{kt}"
        );
        assert!(
            !openssl(&["verify", "-CAfile", ca, "-purpose", "sslclient", ui.to_str().unwrap()])
                .status
                .success(),
            "{kt}"
        );

        // Contents.
        let ca_text = x509_text(&s.file("ca.crt"));
        assert!(ca_text.contains("CA:TRUE, pathlen:1"), "{kt}: {ca_text}");
        assert!(ca_text.contains("Certificate Sign"), "{kt}");
        let node_text = x509_text(&node);
        assert!(node_text.contains("Subject: O = moat, CN = node"), "{kt}: {node_text}");
        assert!(
            node_text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{kt}"
        );
        assert!(node_text.contains("DNS:localhost"), "{kt}");
        assert!(node_text.contains("IP Address:127.0.0.1"), "{kt}");
        assert!(node_text.contains("IP Address:0:0:0:0:0:0:0:1"), "{kt}");
        assert!(node_text.contains("CA:FALSE"), "{kt}");
        let client_text = x509_text(&client);
        assert!(client_text.contains("CN = root"), "{kt}");
        assert!(client_text.contains("TLS Web Client Authentication"), "{kt}");
        assert!(!client_text.contains("Server Authentication"), "{kt}");
        assert!(!client_text.contains("Subject Alternative Name"), "{kt}");
        let ui_text = x509_text(&ui);
        assert!(ui_text.contains("CN = console.example.com"), "{kt}");
        let expected_alg = match kt {
            "ecdsa-p256" => "prime256v1",
            "ecdsa-p384" => "secp384r1",
            "ed25519" => "ED25519",
            _ => "(2048 bit)",
        };
        assert!(node_text.contains(expected_alg), "{kt}: {node_text}");

        // Keys: readable by openssl, matching their certificate, 0600; certs 0644; dir 0700.
        for (crt, key) in [
            ("node.crt", "node.key"),
            ("client.root.crt", "client.root.key"),
            ("ui.crt", "ui.key"),
        ] {
            let k = s.file(key);
            ok(&openssl(&["pkey", "-in", k.to_str().unwrap(), "-noout"]));
            let from_key = ok(&openssl(&["pkey", "-in", k.to_str().unwrap(), "-pubout"]));
            let from_cert = ok(&openssl(&[
                "x509",
                "-in",
                s.file(crt).to_str().unwrap(),
                "-noout",
                "-pubkey",
            ]));
            assert_eq!(from_key, from_cert, "{kt}: {key} does not match {crt}");
            assert_eq!(mode(&k), 0o600, "{kt}: {key}");
            assert_eq!(mode(&s.file(crt)), 0o644, "{kt}: {crt}");
        }
        assert_eq!(mode(&s.certs()), 0o700);
        assert_eq!(mode(&s.ca_key()), 0o600);
        // The CA key is where --ca-key said, never in the certs directory.
        assert!(!listing(&s.certs())
            .iter()
            .any(|f| f.starts_with("ca") && f.ends_with(".key")));
    }
}

#[test]
fn default_lifetimes_match_cockroachdb() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    let days = |f: &str| {
        let out = ok(&openssl(&[
            "x509",
            "-in",
            s.file(f).to_str().unwrap(),
            "-noout",
            "-enddate",
        ]));
        let end = out.trim().trim_start_matches("notAfter=").to_string();
        let out = std::process::Command::new("date")
            .args(["-d", &end, "+%s"])
            .output()
            .unwrap();
        let end: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (end - now) / 86400
    };
    assert!((3659..=3660).contains(&days("ca.crt")), "{}", days("ca.crt"));
    assert!((1829..=1830).contains(&days("node.crt")), "{}", days("node.crt"));
}

#[test]
fn lifetimes_in_hours_days_and_years() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca", "--lifetime", "10y"]));
    ok(&s.cert_ca(&["create-node", "--lifetime", "90d", "localhost"]));
    ok(&s.cert_ca(&["create-client", "--lifetime", "720h", "root"]));
    let text = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "json",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let left: Vec<i64> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["days_left"].as_i64().unwrap())
        .collect();
    assert_eq!(left.len(), 3);
    assert!((3649..=3650).contains(&left[0]), "{left:?}");
    assert!((89..=90).contains(&left[1]), "{left:?}");
    assert!((29..=30).contains(&left[2]), "{left:?}");
}

#[test]
fn leaf_outliving_the_ca_is_refused_with_cockroachdb_wording() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca", "--lifetime", "48h"]));
    let before = snapshot(&s.certs());
    fails(
        &s.cert_ca(&["create-node", "--lifetime", "72h", "localhost"]),
        &["CA lifetime is 48h, shorter than the requested 72h", "--lifetime=47h"],
    );
    assert_eq!(snapshot(&s.certs()), before, "nothing may be written");
    ok(&s.cert_ca(&["create-node", "--lifetime", "47h", "localhost"]));
}

#[test]
fn ca_rotation_puts_the_new_ca_first_and_keeps_the_old() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    let old_ca = ok(&openssl(&[
        "x509",
        "-in",
        s.file("ca.crt").to_str().unwrap(),
        "-noout",
        "-fingerprint",
    ]));
    // Without --overwrite the existing ca.crt is protected.
    std::fs::rename(s.ca_key(), s.path().join("old-ca.key")).unwrap();
    fails(&s.cert_ca(&["create-ca"]), &["ca.crt", "already exists", "--overwrite"]);
    assert!(
        !s.ca_key().exists(),
        "a refused create-ca must not leave a new key behind"
    );
    ok(&s.cert_ca(&["create-ca", "--overwrite"]));
    let pem = std::fs::read_to_string(s.file("ca.crt")).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    let first = ok(&openssl(&[
        "x509",
        "-in",
        s.file("ca.crt").to_str().unwrap(),
        "-noout",
        "-fingerprint",
    ]));
    assert_ne!(first, old_ca, "the new CA must come first");
    // Certificates from the old CA still verify against the bundle.
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s.file("ca.crt").to_str().unwrap(),
        s.file("node.crt").to_str().unwrap(),
    ]));
    // New leaves are signed by the new CA (the key at --ca-key).
    ok(&s.cert_ca(&["create-node", "--overwrite", "localhost"]));
    let issuer_keyid = x509_text(&s.file("node.crt"));
    let new_ca_text = x509_text(&s.file("ca.crt"));
    let ski = new_ca_text
        .split("Subject Key Identifier:")
        .nth(1)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(issuer_keyid.contains(&ski), "node must be signed by the new CA");
}

#[test]
fn ca_key_reuse_needs_the_flag() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let key_before = std::fs::read(s.ca_key()).unwrap();
    fails(
        &s.cert_ca(&["create-ca", "--overwrite"]),
        &["ca.key", "key reuse is disabled", "--allow-ca-key-reuse"],
    );
    ok(&s.cert_ca(&["create-ca", "--overwrite", "--allow-ca-key-reuse"]));
    assert_eq!(
        std::fs::read(s.ca_key()).unwrap(),
        key_before,
        "the key is reused, not replaced"
    );
    let pem = std::fs::read_to_string(s.file("ca.crt")).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
}

#[test]
fn split_cas_sign_clients_and_console() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let client_ca_key = s.path().join("safe/ca-client.key");
    let ui_ca_key = s.path().join("safe/ca-ui.key");
    ok(&s.cert(&["create-client-ca", "--ca-key", client_ca_key.to_str().unwrap()]));
    ok(&s.cert(&["create-ui-ca", "--ca-key", ui_ca_key.to_str().unwrap()]));
    ok(&s.cert(&["create-client", "alice", "--ca-key", client_ca_key.to_str().unwrap()]));
    ok(&s.cert(&["create-ui", "localhost", "--ca-key", ui_ca_key.to_str().unwrap()]));
    let f = |n: &str| s.file(n).to_str().unwrap().to_string();
    ok(&openssl(&[
        "verify",
        "-CAfile",
        &f("ca-client.crt"),
        "-purpose",
        "sslclient",
        &f("client.alice.crt"),
    ]));
    assert!(!openssl(&["verify", "-CAfile", &f("ca.crt"), &f("client.alice.crt")])
        .status
        .success());
    ok(&openssl(&[
        "verify",
        "-CAfile",
        &f("ca-ui.crt"),
        "-purpose",
        "sslserver",
        &f("ui.crt"),
    ]));
    // Signing a client with the main CA key while ca-client.crt exists is refused: wrong key.
    fails(
        &s.cert_ca(&["create-client", "bob"]),
        &["does not match", "ca-client.crt"],
    );
    let list = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "tsv",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]));
    for usage in [
        "CA\tca.crt",
        "Client CA\tca-client.crt",
        "UI CA\tca-ui.crt",
        "UI\tui.crt",
        "Client\tclient.alice.crt",
    ] {
        assert!(list.contains(usage), "{list}");
    }
}

#[test]
fn user_names_are_normalised_and_pkcs8_copies_are_der() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    ok(&s.cert_ca(&["create-client", "Alice", "--also-generate-pkcs8-key"]));
    assert!(s.file("client.alice.crt").exists());
    let pk8 = s.file("client.alice.key.pk8");
    assert_eq!(mode(&pk8), 0o600);
    ok(&openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        pk8.to_str().unwrap(),
        "-noout",
    ]));
    assert!(x509_text(&s.file("client.alice.crt")).contains("CN = alice"));
}

#[test]
fn overwrite_replaces_and_without_it_nothing_changes() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    let before = snapshot(&s.certs());
    fails(
        &s.cert_ca(&["create-node", "localhost"]),
        &["node.crt", "already exists", "--overwrite"],
    );
    fails(
        &s.cert_ca(&["create-client", "root"]),
        &["client.root.crt", "already exists"],
    );
    assert_eq!(snapshot(&s.certs()), before);
    ok(&s.cert_ca(&["create-node", "--overwrite", "otherhost"]));
    assert!(x509_text(&s.file("node.crt")).contains("DNS:otherhost"));
    assert_eq!(mode(&s.file("node.key")), 0o600);
    // No temporary or backup files left behind.
    assert!(
        listing(&s.certs()).iter().all(|f| !f.starts_with(".moat")),
        "{:?}",
        listing(&s.certs())
    );
}
