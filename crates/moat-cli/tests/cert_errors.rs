//! Bad input: each case gets one clear line naming the file, the problem and
//! the fix, a non-zero exit, and nothing written or half-written.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn missing_ca_key_flag() {
    let s = Scratch::new();
    fails(&s.cert(&["create-ca"]), &["CA key is required", "--ca-key"]);
    assert!(!s.certs().exists(), "nothing may be created");
    fails(&s.cert(&["create-node", "localhost"]), &["CA key is required"]);
}

#[test]
fn zero_hosts() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    fails(
        &s.cert_ca(&["create-node"]),
        &["create-node requires at least one host name or address"],
    );
    fails(&s.cert_ca(&["create-ui"]), &["create-ui requires at least one host"]);
    fails(&s.cert_ca(&["create-node", "bad host"]), &["invalid host name"]);
    assert_eq!(listing(&s.certs()), vec!["ca.crt"]);
}

#[test]
fn invalid_user_names() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    for bad in [".bob", "a b", "bob\u{1b}[31m", "x/y", &"u".repeat(64), ""] {
        let err = fails(&s.cert_ca(&["create-client", bad]), &["user name"]);
        assert!(!err.contains('\u{1b}'), "control characters must be escaped: {err:?}");
    }
    assert_eq!(listing(&s.certs()), vec!["ca.crt"]);
}

#[test]
fn ca_key_that_does_not_match_ca_crt() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let other = s.path().join("other.key");
    ok(&openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        other.to_str().unwrap(),
    ]));
    fails(
        &s.cert(&["create-node", "localhost", "--ca-key", other.to_str().unwrap()]),
        &["other.key", "does not match", "ca.crt", "--ca-key"],
    );
    assert_eq!(listing(&s.certs()), vec!["ca.crt"]);
}

#[test]
fn a_leaf_used_as_ca_is_refused() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    fails(
        &s.cert(&[
            "create-client",
            "bob",
            "--ca-cert",
            s.file("node.crt").to_str().unwrap(),
            "--ca-key",
            s.file("node.key").to_str().unwrap(),
        ]),
        &["node.crt", "is not a CA", "CA certificate"],
    );
    assert!(!s.file("client.bob.crt").exists() && !s.file("client.bob.key").exists());
}

#[test]
fn garbage_truncated_and_encrypted_keys() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let key = std::fs::read_to_string(s.ca_key()).unwrap();
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "garbage.key",
            "this is not a key\n".into(),
            &["garbage.key", "no PEM block"],
        ),
        (
            "truncated.key",
            key[..key.len() / 2].to_string(),
            &["truncated.key", "PEM"],
        ),
        (
            "cert-as-key.key",
            std::fs::read_to_string(s.file("ca.crt")).unwrap(),
            &["cert-as-key.key", "CERTIFICATE", "not a private key"],
        ),
        (
            "two.key",
            format!("{key}{key}"),
            &["two.key", "2 PEM blocks", "exactly one"],
        ),
    ];
    for (name, contents, needles) in cases {
        let p = s.path().join(name);
        std::fs::write(&p, contents).unwrap();
        fails(
            &s.cert(&["create-node", "localhost", "--ca-key", p.to_str().unwrap()]),
            needles,
        );
    }
    // An encrypted key, made by openssl.
    let enc = s.path().join("enc.key");
    ok(&openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        s.ca_key().to_str().unwrap(),
        "-out",
        enc.to_str().unwrap(),
        "-passout",
        "pass:secret",
    ]));
    fails(
        &s.cert(&["create-node", "localhost", "--ca-key", enc.to_str().unwrap()]),
        &["enc.key", "encrypted", "decrypt"],
    );
    assert_eq!(listing(&s.certs()), vec!["ca.crt"]);
}

#[test]
fn garbage_and_truncated_ca_certificates() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let pem = std::fs::read_to_string(s.file("ca.crt")).unwrap();
    std::fs::write(s.file("ca.crt"), &pem[..pem.len() / 2]).unwrap();
    fails(&s.cert_ca(&["create-node", "localhost"]), &["ca.crt"]);
    std::fs::write(
        s.file("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fails(
        &s.cert_ca(&["create-node", "localhost"]),
        &["ca.crt", "not a valid X.509 certificate"],
    );
    let key = std::fs::read_to_string(s.ca_key()).unwrap();
    std::fs::write(s.file("ca.crt"), format!("{pem}{key}")).unwrap();
    fails(
        &s.cert_ca(&["create-node", "localhost"]),
        &["ca.crt", "block #2 is of type PRIVATE KEY", "move it"],
    );
    assert!(!s.file("node.crt").exists() && !s.file("node.key").exists());
}

#[test]
fn certs_dir_that_is_a_file_or_unwritable() {
    let s = Scratch::new();
    std::fs::write(s.certs(), "x").unwrap();
    fails(&s.cert_ca(&["create-ca"]), &["certs", "exists but is not a directory"]);
    assert!(!s.ca_key().exists(), "no CA key without its certificate");
    // /proc refuses file creation even to root.
    let out = moat(&[
        "cert",
        "create-ca",
        "--certs-dir",
        "/proc",
        "--ca-key",
        s.ca_key().to_str().unwrap(),
    ]);
    fails(&out, &["/proc"]);
    assert!(!s.ca_key().exists(), "no CA key without its certificate");
}

#[test]
fn missing_ca_and_missing_key_directory() {
    let s = Scratch::new();
    fails(
        &s.cert_ca(&["create-node", "localhost"]),
        &["ca.crt", "CA certificate not found", "create-ca"],
    );
    let out = s.cert(&[
        "create-ca",
        "--ca-key",
        s.path().join("nowhere/ca.key").to_str().unwrap(),
    ]);
    fails(&out, &["nowhere", "does not exist", "mkdir"]);
    assert!(listing(&s.certs()).is_empty());
}

#[test]
fn bad_flags() {
    let s = Scratch::new();
    fails(
        &s.cert_ca(&["create-ca", "--lifetime", "ten years"]),
        &["invalid lifetime", "87840h"],
    );
    fails(
        &s.cert_ca(&["create-ca", "--key-type", "rsa", "--key-size", "1024"]),
        &["RSA key size 1024", "--key-size"],
    );
    // clap rejects unknown values with its own message and exit code 2.
    let out = s.cert_ca(&["create-ca", "--key-type", "dsa"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'dsa'"));
}

#[test]
fn list_flags_every_problem() {
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    ok(&s.cert_ca(&["create-client", "alice"]));
    ok(&s.cert_ca(&["create-client", "bob"]));
    ok(&s.cert_ca(&["create-client", "carol"]));
    ok(&s.cert_ca(&["create-client", "dave", "--lifetime", "240h"]));
    // alice: world-readable key; bob: key swapped with carol's; carol: key missing;
    // stray files: an unknown prefix, a backup CA, a key concatenated into a cert.
    std::fs::set_permissions(s.file("client.alice.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(s.file("client.carol.key"), s.file("client.bob.key")).unwrap();
    std::fs::remove_file(s.file("client.carol.key")).unwrap();
    std::fs::write(s.file("server.crt"), "x").unwrap();
    std::fs::copy(s.file("ca.crt"), s.file("ca.old.crt")).unwrap();
    let mut node = std::fs::read_to_string(s.file("node.crt")).unwrap();
    node.push_str(&std::fs::read_to_string(s.file("node.key")).unwrap());
    std::fs::write(s.file("ui.crt"), node).unwrap();

    let out = moat(&[
        "cert",
        "list",
        "--format",
        "json",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let err_of = |file: &str| {
        doc["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cert_file"] == file)
            .unwrap()["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        err_of("client.alice.crt").contains("-rw-r--r--, exceeds -rwx"),
        "{}",
        err_of("client.alice.crt")
    );
    assert!(err_of("client.alice.crt").contains("chmod 600"));
    assert!(err_of("client.bob.crt").contains("does not match"));
    assert!(err_of("client.carol.crt").contains("could not stat key file"));
    assert!(err_of("ui.crt").contains("PRIVATE KEY"), "{}", err_of("ui.crt"));
    assert_eq!(err_of("node.crt"), "");
    let dave = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cert_file"] == "client.dave.crt")
        .unwrap();
    assert!(
        dave["warning"].as_str().unwrap().starts_with("expires in 9 days"),
        "{dave}"
    );
    let skipped: Vec<String> = doc["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(skipped, vec!["ca.old.crt", "server.crt"]);

    // The permission check can be turned off, as in CockroachDB.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "cert",
            "list",
            "--format",
            "tsv",
            "--certs-dir",
            s.certs().to_str().unwrap(),
        ])
        .env("MOAT_SKIP_KEY_PERMISSION_CHECK", "true")
        .output()
        .unwrap();
    let tsv = ok(&out);
    let alice = tsv.lines().find(|l| l.contains("client.alice.crt")).unwrap();
    assert!(alice.ends_with('\t'), "no error expected: {alice}");
    // And the table form names the skipped files on stderr.
    let out = moat(&[
        "cert",
        "list",
        "--format",
        "table",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("skipped server.crt: bad filename: unknown prefix \"server\""),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("(8 rows)"), "{}", stdout(&out));
}

#[test]
fn root_owned_group_readable_key_is_accepted() {
    // CockroachDB's Kubernetes exception: 0640 is fine when root owns the key
    // and its group is ours. Only meaningful when the tests run as root.
    if unsafe_uid() != 0 {
        return;
    }
    let s = Scratch::new();
    s.standard_dir("ecdsa-p256");
    std::fs::set_permissions(s.file("node.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let tsv = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "tsv",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]));
    let node = tsv.lines().find(|l| l.starts_with("Node")).unwrap();
    assert!(node.ends_with('\t'), "{node}");
    std::fs::set_permissions(s.file("node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let tsv = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "tsv",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]));
    assert!(tsv.contains("exceeds -rwxr-----"), "{tsv}");
}

fn unsafe_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just made is our uid.
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::metadata(f.path()).unwrap().uid()
}
