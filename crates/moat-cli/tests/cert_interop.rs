//! Interoperability: directories and CAs made by openssl (CockroachDB-style,
//! and an organisation's own CA with intermediates), and the CSR workflow.

mod common;
use common::*;
use std::path::Path;

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

/// An openssl config for extensions.
const EXT: &str = r#"
[x_ca]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[x_inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[x_node]
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[x_client]
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"#;

#[test]
fn a_cockroachdb_style_directory_made_with_openssl_is_listed() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.certs()).unwrap();
    std::fs::write(s.path().join("ext.cnf"), EXT).unwrap();
    // CockroachDB writes RSA keys as PKCS#1 ("RSA PRIVATE KEY"); ECDSA as SEC1.
    sh(
        r#"
        openssl genrsa -traditional -out safe-ca.key 2048 2>/dev/null
        openssl req -x509 -new -key safe-ca.key -subj "/O=Cockroach/CN=Cockroach CA" -days 3660 -extensions x_ca -config <(cat /etc/ssl/openssl.cnf ext.cnf) -out certs/ca.crt
        openssl genrsa -traditional -out certs/node.key 2048 2>/dev/null
        openssl req -new -key certs/node.key -subj "/O=Cockroach/CN=node" -out node.csr
        openssl x509 -req -in node.csr -CA certs/ca.crt -CAkey safe-ca.key -CAcreateserial -days 1830 -extfile ext.cnf -extensions x_node -out certs/node.crt 2>/dev/null
        openssl ecparam -name prime256v1 -genkey -noout -out certs/client.maxroach.key
        openssl req -new -key certs/client.maxroach.key -subj "/O=Cockroach/CN=maxroach" -out c.csr
        openssl x509 -req -in c.csr -CA certs/ca.crt -CAkey safe-ca.key -CAcreateserial -days 1830 -extfile ext.cnf -extensions x_client -out certs/client.maxroach.crt 2>/dev/null
        chmod 600 certs/*.key
        grep -q "BEGIN RSA PRIVATE KEY" certs/node.key
        grep -q "BEGIN EC PRIVATE KEY" certs/client.maxroach.key
        "#,
        s.path(),
    );
    let tsv = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "tsv",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ]));
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(
        lines[1], "Usage\tCertificate File\tKey File\tExpires\tNotes\tError",
        "{tsv}"
    );
    assert!(
        lines[2].starts_with("CA\tca.crt\t\t") && lines[2].ends_with("\tnum certs: 1\t"),
        "{tsv}"
    );
    assert!(
        lines[3].starts_with("Node\tnode.crt\tnode.key\t") && lines[3].ends_with("\taddresses: localhost,127.0.0.1\t"),
        "{tsv}"
    );
    assert!(
        lines[4].starts_with("Client\tclient.maxroach.crt\tclient.maxroach.key\t")
            && lines[4].ends_with("\tuser: maxroach\t"),
        "{tsv}"
    );

    // The organisation's CA (PKCS#1 RSA key) signs with moat; leaves verify with openssl.
    let ca_key = s.path().join("safe-ca.key");
    ok(&s.cert(&["create-client", "alice", "--ca-key", ca_key.to_str().unwrap()]));
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s.file("ca.crt").to_str().unwrap(),
        "-purpose",
        "sslclient",
        s.file("client.alice.crt").to_str().unwrap(),
    ]));
    let text = x509_text(&s.file("client.alice.crt"));
    assert!(text.contains("Issuer: O = Cockroach, CN = Cockroach CA"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
}

#[test]
fn org_ca_keys_in_every_encoding_and_lying_labels() {
    for (name, genkey) in [
        ("rsa-pkcs1", "openssl genrsa -traditional -out k 2048 2>/dev/null"),
        ("rsa-pkcs8", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k"),
        ("ec-sec1", "openssl ecparam -name secp384r1 -genkey -noout -out k"),
        ("ec-pkcs8", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k"),
        ("ed25519", "openssl genpkey -algorithm ED25519 -out k"),
        // PKCS#8 bytes under an "RSA PRIVATE KEY" label, as CockroachDB's auto-TLS writes.
        ("lying-label", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k8 && sed 's/BEGIN PRIVATE KEY/BEGIN RSA PRIVATE KEY/;s/END PRIVATE KEY/END RSA PRIVATE KEY/' k8 > k"),
    ] {
        let s = Scratch::new();
        std::fs::create_dir_all(s.certs()).unwrap();
        std::fs::write(s.path().join("ext.cnf"), EXT).unwrap();
        sh(
            &format!(
                r#"{genkey}
                openssl req -x509 -new -key k -subj "/C=DE/O=Example Org/OU=Platform/CN=Example Root CA" -days 3000 -extensions x_ca -config <(cat /etc/ssl/openssl.cnf ext.cnf) -out certs/ca.crt"#
            ),
            s.path(),
        );
        let key = s.path().join("k");
        ok(&s.cert(&["create-node", "localhost", "127.0.0.1", "--ca-key", key.to_str().unwrap()]));
        ok(&s.cert(&["create-client", "root", "--ca-key", key.to_str().unwrap()]));
        let ca = s.file("ca.crt");
        ok(&openssl(&["verify", "-CAfile", ca.to_str().unwrap(), "-purpose", "sslserver", s.file("node.crt").to_str().unwrap()]));
        ok(&openssl(&["verify", "-CAfile", ca.to_str().unwrap(), "-purpose", "sslclient", s.file("client.root.crt").to_str().unwrap()]));
        assert!(x509_text(&s.file("node.crt")).contains("Issuer: C = DE, O = Example Org, OU = Platform, CN = Example Root CA"), "{name}");
    }
}

#[test]
fn intermediate_ca_chain_goes_into_the_leaf_file() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.certs()).unwrap();
    std::fs::write(s.path().join("ext.cnf"), EXT).unwrap();
    sh(
        r#"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root.key
        openssl req -x509 -new -key root.key -subj "/O=Example/CN=Root" -days 3000 -extensions x_ca -config <(cat /etc/ssl/openssl.cnf ext.cnf) -out certs/ca.crt
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out inter.key
        openssl req -new -key inter.key -subj "/O=Example/CN=Issuing CA 1" -out inter.csr
        openssl x509 -req -in inter.csr -CA certs/ca.crt -CAkey root.key -CAcreateserial -days 2000 -extfile ext.cnf -extensions x_inter -out inter.crt 2>/dev/null
        "#,
        s.path(),
    );
    let inter = s.path().join("inter.crt");
    let inter_key = s.path().join("inter.key");
    let args = [
        "--ca-cert",
        inter.to_str().unwrap(),
        "--ca-key",
        inter_key.to_str().unwrap(),
    ];
    ok(&s.cert(&[&["create-node", "localhost"][..], &args[..]].concat()));
    ok(&s.cert(&[&["create-client", "root"][..], &args[..]].concat()));
    let node_pem = std::fs::read_to_string(s.file("node.crt")).unwrap();
    assert_eq!(node_pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf + intermediate");
    // openssl verifies with only the root as trust anchor and the file's chain as untrusted.
    for f in ["node.crt", "client.root.crt"] {
        let p = s.file(f);
        let p = p.to_str().unwrap();
        ok(&openssl(&[
            "verify",
            "-CAfile",
            s.file("ca.crt").to_str().unwrap(),
            "-untrusted",
            p,
            p,
        ]));
        // Without the intermediate it does not verify.
        assert!(!openssl(&["verify", "-CAfile", s.file("ca.crt").to_str().unwrap(), p])
            .status
            .success());
    }
    // moat cert list reads the chain.
    let doc: serde_json::Value = serde_json::from_str(&ok(&moat(&[
        "cert",
        "list",
        "--format",
        "json",
        "--certs-dir",
        s.certs().to_str().unwrap(),
    ])))
    .unwrap();
    let node = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cert_file"] == "node.crt")
        .unwrap();
    assert_eq!(node["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(node["error"], serde_json::Value::Null);
}

#[test]
fn csr_workflow_keeps_the_key_local() {
    // The CA holder's machine and the node's machine.
    let ca_side = Scratch::new();
    ok(&ca_side.cert_ca(&["create-ca"]));
    let node_side = Scratch::new();
    ok(&node_side.cert(&[
        "create-csr",
        "node",
        "db1.example.com",
        "10.0.0.1",
        "--key-type",
        "ed25519",
    ]));
    assert_eq!(listing(&node_side.certs()), vec!["node.csr", "node.key"]);
    assert_eq!(mode(&node_side.file("node.key")), 0o600);
    ok(&openssl(&[
        "req",
        "-in",
        node_side.file("node.csr").to_str().unwrap(),
        "-noout",
        "-verify",
    ]));

    // Only the CSR travels.
    let csr = ca_side.path().join("node.csr");
    std::fs::copy(node_side.file("node.csr"), &csr).unwrap();
    let out = ca_side.cert_ca(&[
        "sign-csr",
        csr.to_str().unwrap(),
        "--profile",
        "node",
        "--host",
        "db1.example.com,10.0.0.1,db1",
    ]);
    ok(&out);
    let crt = ca_side.path().join("node.crt");
    let text = x509_text(&crt);
    assert!(text.contains("Subject: O = moat, CN = node"), "{text}");
    assert!(
        text.contains("DNS:db1.example.com, IP Address:10.0.0.1, DNS:db1\n"),
        "{text}"
    );
    assert!(
        text.contains("ED25519"),
        "the certificate carries the node's own key: {text}"
    );
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    // Back on the node: the certificate pairs with the local key.
    std::fs::copy(&crt, node_side.file("node.crt")).unwrap();
    std::fs::copy(ca_side.file("ca.crt"), node_side.file("ca.crt")).unwrap();
    let tsv = ok(&moat(&[
        "cert",
        "list",
        "--format",
        "tsv",
        "--certs-dir",
        node_side.certs().to_str().unwrap(),
    ]));
    let node = tsv.lines().find(|l| l.starts_with("Node")).unwrap();
    assert!(node.ends_with('\t'), "node must be valid: {tsv}");
    ok(&openssl(&[
        "verify",
        "-CAfile",
        ca_side.file("ca.crt").to_str().unwrap(),
        "-purpose",
        "sslserver",
        crt.to_str().unwrap(),
    ]));
}

#[test]
fn openssl_made_csrs_are_signed_by_policy_and_refused_beyond_it() {
    let s = Scratch::new();
    ok(&s.cert_ca(&["create-ca"]));
    let cnf = s.path().join("req.cnf");
    std::fs::write(
        &cnf,
        r#"[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
[server_ext]
extendedKeyUsage = serverAuth
[client_ext]
extendedKeyUsage = clientAuth
[host_ext]
subjectAltName = DNS:localhost,DNS:evil.example.com
[client_host_ext]
subjectAltName = DNS:alice.example.com
"#,
    )
    .unwrap();
    let mk = |name: &str, subj: &str, ext: Option<&str>, keyalg: &str| {
        let key = s.path().join(format!("{name}.key"));
        let csr = s.path().join(format!("{name}.csr"));
        let mut args = vec![
            "req",
            "-new",
            "-newkey",
            keyalg,
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-subj",
            subj,
            "-config",
            cnf.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ];
        if let Some(e) = ext {
            args.push("-reqexts");
            args.push(e);
        }
        let mut opts: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if keyalg == "ec" {
            opts.extend(["-pkeyopt".into(), "ec_paramgen_curve:P-384".into()]);
        }
        ok(&openssl(&opts));
        csr
    };
    let sign = |csr: &Path, profile: &str, extra: &[&str]| {
        let mut a = vec!["sign-csr", csr.to_str().unwrap(), "--profile", profile];
        a.extend_from_slice(extra);
        s.cert_ca(&a)
    };
    // Accepted: a client CSR for alice, P-384 key signed with SHA-256 (OpenSSL's default).
    let alice = mk("alice", "/CN=Alice", Some("client_ext"), "ec");
    ok(&sign(&alice, "client", &["--user", "alice"]));
    let text = x509_text(&s.path().join("alice.crt"));
    assert!(text.contains("CN = alice") && text.contains("secp384r1"), "{text}");
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s.file("ca.crt").to_str().unwrap(),
        "-purpose",
        "sslclient",
        s.path().join("alice.crt").to_str().unwrap(),
    ]));

    // Refusals, each with its reason and no certificate written.
    let cases: Vec<(std::path::PathBuf, &str, Vec<&str>, &str)> = vec![
        (
            mk("ca", "/CN=node", Some("ca_ext"), "rsa:2048"),
            "node",
            vec!["--host", "localhost"],
            "CA rights",
        ),
        (
            mk("srv", "/CN=bob", Some("server_ext"), "rsa:2048"),
            "client",
            vec![],
            "asks for serverAuth, which the client profile does not grant",
        ),
        (
            mk("hosts", "/CN=node", Some("host_ext"), "rsa:2048"),
            "node",
            vec!["--host", "localhost"],
            "\"evil.example.com\", which is not among the allowed hosts",
        ),
        (
            mk("chost", "/CN=alice", Some("client_host_ext"), "rsa:2048"),
            "client",
            vec![],
            "carries no host names",
        ),
        (
            mk("wronguser", "/CN=mallory", None, "rsa:2048"),
            "client",
            vec!["--user", "alice"],
            "it is for user \"mallory\", not \"alice\"",
        ),
        (
            mk("badname", "/CN=bad name", None, "rsa:2048"),
            "client",
            vec![],
            "not a valid SQL user name",
        ),
        (
            mk("nonode", "/CN=alice", None, "rsa:2048"),
            "node",
            vec!["--host", "localhost"],
            "must have CN \"node\"",
        ),
        (
            mk("nohost", "/CN=node", None, "rsa:2048"),
            "node",
            vec![],
            "names no host",
        ),
        (mk("weak", "/CN=carol", None, "rsa:1024"), "client", vec![], "1024 bits"),
    ];
    for (csr, profile, extra, reason) in cases {
        let out = sign(&csr, profile, &extra);
        fails(&out, &["CSR refused", reason]);
        assert!(!csr.with_extension("crt").exists(), "{}", csr.display());
    }
    // A tampered CSR: flip a byte inside the signed part.
    let good = mk("tamper", "/CN=dave", None, "rsa:2048");
    let der_path = s.path().join("tamper.der");
    ok(&openssl(&[
        "req",
        "-in",
        good.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der_path.to_str().unwrap(),
    ]));
    let mut bytes = std::fs::read(&der_path).unwrap();
    let i = bytes.windows(4).position(|w| w == b"dave").unwrap();
    bytes[i] = b'e';
    std::fs::write(&der_path, &bytes).unwrap();
    let pem_path = s.path().join("tampered.csr");
    ok(&openssl(&[
        "req",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-out",
        pem_path.to_str().unwrap(),
    ]));
    fails(
        &sign(&pem_path, "client", &[]),
        &["tampered.csr", "signature does not verify"],
    );
    // A certificate passed as a CSR.
    fails(
        &sign(&s.file("ca.crt"), "client", &[]),
        &["ca.crt", "not CERTIFICATE REQUEST"],
    );
}
