//! Who a peer certificate speaks for, CockroachDB's way.
//!
//! * With `crdb://` URI SANs, each one is a scope (`crdb://tenant/<id>/user/<u>`
//!   or `crdb://tenant-name/<n>/user/<u>`); moat has one tenant, the system
//!   tenant (ID 1, name `system`), so only scopes for it count.
//! * Otherwise the principals are the subject CN and every DNS SAN, each passed
//!   through `--cert-principal-map` (`cert-name:db-name,...`).
//! * Alternatively, for `root` and `node`, the whole subject DN can be pinned
//!   (`--root-cert-distinguished-name`, `--node-cert-distinguished-name`).

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use crate::digest_cache::{digest_of, DigestCache};
use crate::TlsError;

/// The system tenant's ID and name: the only tenant moat serves.
pub const SYSTEM_TENANT_ID: u64 = 1;
/// See [`SYSTEM_TENANT_ID`].
pub const SYSTEM_TENANT_NAME: &str = "system";

/// `--cert-principal-map`: certificate names mapped to database principals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalMap(HashMap<String, String>);

impl PrincipalMap {
    /// Parses `cert-name:db-name,...`: entries split at their last colon (the
    /// certificate name may contain colons), empty entries ignored, later
    /// duplicates win.
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        let mut map = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((from, to)) = entry.rsplit_once(':') else {
                return Err(TlsError::Invalid(format!(
                    "invalid <cert-principal>:<db-principal> mapping: {entry:?} has no colon; write it as cert-name:db-name"
                )));
            };
            if from.is_empty() || to.is_empty() {
                return Err(TlsError::Invalid(format!(
                    "invalid <cert-principal>:<db-principal> mapping: {entry:?} has an empty side"
                )));
            }
            map.insert(from.to_string(), to.to_string());
        }
        Ok(PrincipalMap(map))
    }

    /// Maps a certificate name (identity when unmapped).
    pub fn map<'a>(&'a self, name: &'a str) -> &'a str {
        self.0.get(name).map(String::as_str).unwrap_or(name)
    }
}

/// A distinguished name as a multiset of (attribute type, value) pairs.
///
/// CockroachDB compares DNs in order; moat compares them regardless of RDN
/// order (the same attributes with the same values), so `CN=node,O=acme` and
/// `O=acme,CN=node` both match a certificate whose subject is `O=acme, CN=node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<(String, String)>);

impl Dn {
    /// Parses `CN=node,O=Example\, Inc.,OU=db` (RFC 4514 escapes: `\,` `\+` `\=` `\\`).
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n) => cur.push(n),
                    None => {
                        return Err(TlsError::Invalid(format!(
                            "invalid distinguished name {text:?}: trailing backslash"
                        )))
                    }
                },
                ',' | '+' => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        let mut attrs = Vec::new();
        for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let Some((k, v)) = p.split_once('=') else {
                return Err(TlsError::Invalid(format!(
                    "invalid distinguished name {text:?}: {p:?} is not TYPE=value"
                )));
            };
            attrs.push((k.trim().to_ascii_uppercase(), v.trim().to_string()));
        }
        if attrs.is_empty() {
            return Err(TlsError::Invalid(format!("invalid distinguished name {text:?}: empty")));
        }
        attrs.sort();
        Ok(Dn(attrs))
    }

    /// The subject DN of a parsed certificate.
    pub fn of_name(name: &X509Name<'_>) -> Self {
        let mut attrs: Vec<(String, String)> = name
            .iter_attributes()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(a.attr_type(), x509_parser::objects::oid_registry())
                    .map(|s| s.to_ascii_uppercase())
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let key = match key.as_str() {
                    "STREETADDRESS" => "STREET".to_string(),
                    "DOMAINCOMPONENT" => "DC".to_string(),
                    _ => key,
                };
                (key, a.as_str().unwrap_or("").to_string())
            })
            .collect();
        attrs.sort();
        Dn(attrs)
    }
}

/// What a peer certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    /// Principals valid for this (system) tenant, after the principal map.
    pub names: Vec<String>,
    /// The subject DN as RFC 4514 text (for messages).
    pub subject: String,
    /// The subject DN for exact matching.
    pub dn: Dn,
}

/// The principals a parsed certificate names (see the module docs).
fn names_of(x509: &X509Certificate<'_>, map: &PrincipalMap) -> Result<Vec<String>, String> {
    let mut crdb_scopes: Vec<String> = Vec::new();
    let mut saw_crdb = false;
    let mut dns = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) if u.starts_with("crdb://") => {
                    saw_crdb = true;
                    crdb_scopes.extend(parse_crdb_scope(u)?);
                }
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    if saw_crdb {
        return Ok(crdb_scopes);
    }
    let mut v = Vec::new();
    if let Some(cn) = x509.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
        v.push(moat_pki::username::normalize(map.map(cn)));
    }
    for d in dns {
        v.push(map.map(&d).to_string());
    }
    Ok(v)
}

fn parse<'a>(cert: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(cert)
        .map(|(_, c)| c)
        .map_err(|e| format!("unparsable certificate: {e}"))
}

fn describe_names(names: &[String]) -> String {
    if names.is_empty() {
        "no principal".to_string()
    } else {
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
    }
}

impl Principals {
    /// Extracts the principals of a leaf certificate.
    pub fn of(cert: &CertificateDer<'_>, map: &PrincipalMap) -> Result<Self, String> {
        let x509 = parse(cert)?;
        Ok(Principals {
            names: names_of(&x509, map)?,
            subject: x509.subject().to_string(),
            dn: Dn::of_name(x509.subject()),
        })
    }

    /// Whether `name` is among the principals.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn describe(&self) -> String {
        describe_names(&self.names)
    }
}

/// The principals of client certificates seen before, keyed by the SHA-256
/// of the certificate's DER (see [`crate::digest_cache`]): a client logging in
/// again with the same certificate costs a digest, not a parse.
#[derive(Debug)]
pub struct PrincipalCache {
    map: PrincipalMap,
    seen: DigestCache<Arc<Principals>>,
}

impl PrincipalCache {
    /// How many certificates it remembers.
    pub const CAPACITY: usize = 4096;

    /// An empty cache for principals extracted with `map`.
    pub fn new(map: PrincipalMap) -> Self {
        PrincipalCache {
            map,
            seen: DigestCache::new(Self::CAPACITY),
        }
    }

    /// [`Principals::of`] `leaf`, remembered.
    pub fn of(&self, leaf: &CertificateDer<'_>) -> Result<Arc<Principals>, String> {
        let key = digest_of([leaf.as_ref()]);
        if let Some(p) = self.seen.get(&key) {
            return Ok(p);
        }
        let p = Arc::new(Principals::of(leaf, &self.map)?);
        self.seen.insert(key, p.clone());
        Ok(p)
    }
}

/// Parses a `crdb://` URI SAN into the user it grants on the system tenant
/// (none when scoped to another tenant).
fn parse_crdb_scope(uri: &str) -> Result<Option<String>, String> {
    let bad = || format!("invalid tenant URI SAN {uri:?}");
    let rest = uri.strip_prefix("crdb://").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["tenant", id, "user", user] => {
            let id: u64 = id.parse().map_err(|_| bad())?;
            Ok((id == SYSTEM_TENANT_ID).then(|| user.to_string()))
        }
        ["tenant-name", name, "user", user] => Ok((*name == SYSTEM_TENANT_NAME).then(|| user.to_string())),
        _ => Err(bad()),
    }
}

/// Identity rules shared by the RPC and SQL listeners.
#[derive(Debug, Clone, Default)]
pub struct IdentityPolicy {
    /// `--cert-principal-map`.
    pub map: PrincipalMap,
    /// `--root-cert-distinguished-name`.
    pub root_dn: Option<Dn>,
    /// `--node-cert-distinguished-name`.
    pub node_dn: Option<Dn>,
}

impl IdentityPolicy {
    /// Decides whether a verified client certificate may make node-to-node
    /// RPCs: its subject must equal the node or root DN when either is set,
    /// otherwise it must carry the principal `node` or `root`. Returns the
    /// principal, or the refusal naming what the certificate is valid for.
    pub fn authorize_rpc(&self, leaf: &CertificateDer<'_>) -> Result<&'static str, String> {
        // On every RPC handshake: build only what the decision needs (the
        // subject text only for a refusal).
        let x509 = parse(leaf)?;
        if self.root_dn.is_some() || self.node_dn.is_some() {
            let dn = Dn::of_name(x509.subject());
            if self.node_dn.as_ref() == Some(&dn) {
                return Ok("node");
            }
            if self.root_dn.as_ref() == Some(&dn) {
                return Ok("root");
            }
            return Err(format!(
                "need root or node client cert to perform RPCs on this server: cert DN {:?} did not match the set root or node DN",
                x509.subject().to_string()
            ));
        }
        let names = names_of(&x509, &self.map)?;
        for who in ["node", "root"] {
            if names.iter().any(|n| n == who) {
                return Ok(who);
            }
        }
        Err(format!(
            "need root or node client cert to perform RPCs on this server (cert {:?} is valid for {})",
            x509.subject().to_string(),
            describe_names(&names)
        ))
    }

    /// Decides whether a verified client certificate may log in as SQL user
    /// `user`: with a DN set for that user (root, node) the subject must equal
    /// it; otherwise a principal must equal the user.
    pub fn authorize_user(&self, leaf: &CertificateDer<'_>, user: &str) -> Result<(), String> {
        self.authorize_principals(&Principals::of(leaf, &self.map)?, user)
    }

    /// [`IdentityPolicy::authorize_user`] for principals already extracted
    /// (with this policy's map, e.g. by a [`PrincipalCache`]).
    pub fn authorize_principals(&self, p: &Principals, user: &str) -> Result<(), String> {
        let pinned = match user {
            "root" => self.root_dn.as_ref(),
            "node" => self.node_dn.as_ref(),
            _ => None,
        };
        if let Some(dn) = pinned {
            if &p.dn == dn {
                return Ok(());
            }
            return Err(format!(
                "certificate authentication failed for user {user:?} (DN: {}): the certificate's DN does not match the DN set for {user:?}",
                p.subject
            ));
        }
        if p.contains(user) {
            return Ok(());
        }
        Err(format!(
            "certificate authentication failed for user {user:?} (DN: {}): the client certificate is valid for {}",
            p.subject,
            p.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, dns: &[&str], uris: &[&str], org: Option<&str>) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(o) = org {
            p.distinguished_name.push(rcgen::DnType::OrganizationName, o);
        }
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for u in uris {
            p.subject_alt_names.push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn map_splits_at_the_last_colon() {
        let m = PrincipalMap::parse("spiffe://x:y:node, a:b,,a:c").unwrap();
        assert_eq!(m.map("spiffe://x:y"), "node");
        assert_eq!(m.map("a"), "c");
        assert_eq!(m.map("z"), "z");
        assert!(PrincipalMap::parse("nocolon").is_err());
        assert!(PrincipalMap::parse(":x").is_err());
    }

    #[test]
    fn cn_and_dns_sans_are_principals_unless_crdb_uris() {
        let none = PrincipalMap::default();
        let p = Principals::of(&cert("Node", &["db1.example.com"], &[], None), &none).unwrap();
        assert_eq!(p.names, vec!["node", "db1.example.com"]);
        let p = Principals::of(
            &cert(
                "alice",
                &[],
                &["crdb://tenant/1/user/alice2", "crdb://tenant/5/user/x"],
                None,
            ),
            &none,
        )
        .unwrap();
        assert_eq!(p.names, vec!["alice2"]);
        assert!(Principals::of(&cert("a", &[], &["crdb://bogus"], None), &none).is_err());
    }

    #[test]
    fn rpc_needs_node_or_root() {
        let mut policy = IdentityPolicy::default();
        assert_eq!(policy.authorize_rpc(&cert("node", &[], &[], None)), Ok("node"));
        assert_eq!(policy.authorize_rpc(&cert("root", &[], &[], None)), Ok("root"));
        let err = policy.authorize_rpc(&cert("alice", &[], &[], None)).unwrap_err();
        assert!(err.contains("valid for \"alice\""), "{err}");
        // An organisation's CN mapped to node.
        policy.map = PrincipalMap::parse("db-node.acme.internal:node").unwrap();
        assert_eq!(
            policy.authorize_rpc(&cert("db-node.acme.internal", &[], &[], None)),
            Ok("node")
        );
        // A pinned DN replaces principal matching.
        policy.node_dn = Some(Dn::parse("CN=svc-db,O=Acme").unwrap());
        assert_eq!(
            policy.authorize_rpc(&cert("svc-db", &[], &[], Some("Acme"))),
            Ok("node")
        );
        assert!(policy.authorize_rpc(&cert("node", &[], &[], None)).is_err());
    }

    #[test]
    fn sql_user_must_be_named() {
        let policy = IdentityPolicy::default();
        assert!(policy.authorize_user(&cert("alice", &[], &[], None), "alice").is_ok());
        let err = policy
            .authorize_user(&cert("alice", &[], &[], None), "bob")
            .unwrap_err();
        assert!(
            err.contains("user \"bob\"") && err.contains("valid for \"alice\""),
            "{err}"
        );
    }

    #[test]
    fn principal_cache_remembers_per_certificate() {
        let map = PrincipalMap::parse("svc-alice:alice").unwrap();
        let cache = PrincipalCache::new(map.clone());
        let a = cert("svc-alice", &[], &[], None);
        let first = cache.of(&a).unwrap();
        assert_eq!(first.names, vec!["alice"]);
        assert!(
            Arc::ptr_eq(&first, &cache.of(&a).unwrap()),
            "the second lookup is the remembered one"
        );
        let b = cert("bob", &[], &[], None);
        assert_eq!(cache.of(&b).unwrap().names, vec!["bob"]);
        assert!(cache.of(&cert("a", &[], &["crdb://bogus"], None)).is_err());
        let policy = IdentityPolicy {
            map,
            ..Default::default()
        };
        assert!(policy.authorize_principals(&cache.of(&a).unwrap(), "alice").is_ok());
        assert!(policy.authorize_principals(&cache.of(&a).unwrap(), "bob").is_err());
    }

    #[test]
    fn dn_parsing() {
        assert_eq!(Dn::parse("CN=a,O=b").unwrap(), Dn::parse("o=b, cn=a").unwrap());
        assert_eq!(
            Dn::parse(r"O=Acme\, Inc.,CN=x").unwrap().0[1],
            ("O".into(), "Acme, Inc.".into())
        );
        assert!(Dn::parse("garbage").is_err());
        assert!(Dn::parse("").is_err());
    }
}
