//! The pg_hba parser and rule matching. Checked on every configuration that
//! parses: the mandatory root rule holds (`root` always meets a
//! `cert-password` rule first, from any address, with or without TLS), and
//! matching never panics for IPv4, IPv6 and IPv4-mapped peers.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use moat_server::hba::{HbaConfig, Method};

const USERS: [&str; 5] = ["root", "alice", "node", "", "Root"];
const IPS: [&str; 6] = [
    "127.0.0.1",
    "10.1.2.3",
    "::1",
    "::ffff:10.1.2.3",
    "fe80::1",
    "255.255.255.255",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = HbaConfig::parse(&text) else { return };
    assert!(!cfg.rules.is_empty());
    for ip in IPS {
        let ip: IpAddr = ip.parse().unwrap();
        for tls in [true, false] {
            for user in USERS {
                if let Some(rule) = cfg.find(tls, user, ip) {
                    let _ = rule.method.name();
                }
            }
            let root = cfg.find(tls, "root", ip).map(|r| r.method);
            assert_eq!(
                root,
                Some(Method::CertPassword),
                "root does not meet its mandatory cert-password rule first (tls={tls}, ip={ip}): {:?}",
                cfg.rules
            );
        }
    }
});
