//! Principals: the input is `<principal map>\n<distinguished name>\n<DER
//! certificate>`. Runs `PrincipalMap::parse`, `Dn::parse`,
//! `Principals::of` on the certificate bytes, and the RPC/SQL identity
//! decisions with policies built from what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_tls::principal::{Dn, IdentityPolicy, PrincipalMap, Principals};
use rustls_pki_types::CertificateDer;

fn line(rest: &mut &[u8]) -> String {
    let i = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let s = String::from_utf8_lossy(&rest[..i]).into_owned();
    *rest = &rest[(i + 1).min(rest.len())..];
    s
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let map_text = line(&mut rest);
    let dn_text = line(&mut rest);
    let cert = CertificateDer::from(rest);

    let map = PrincipalMap::parse(&map_text).unwrap_or_default();
    let _ = map.map("root");
    let dn = Dn::parse(&dn_text).ok();
    if let Some(dn) = &dn {
        assert_eq!(
            Dn::parse(&dn_text).ok().as_ref(),
            Some(dn),
            "Dn::parse is not deterministic"
        );
    }
    if let Ok(p) = Principals::of(&cert, &map) {
        let _ = p.contains("root");
    }
    for (root_dn, node_dn) in [(None, None), (dn.clone(), None), (None, dn.clone())] {
        let policy = IdentityPolicy {
            map: map.clone(),
            root_dn,
            node_dn,
        };
        let _ = policy.authorize_rpc(&cert);
        let _ = policy.authorize_user(&cert, "root");
        let _ = policy.authorize_user(&cert, "alice");
    }
});
