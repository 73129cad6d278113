//! Host-based authentication in pg_hba syntax (CockroachDB's subset, plus
//! `cert-and-password` and PostgreSQL's `clientcert=verify-full`).
//!
//! ```text
//! # TYPE    DATABASE USER        ADDRESS        METHOD              [OPTIONS]
//! hostssl   all      alice,bob   10.0.0.0/8     cert-password
//! host      all      all         all            cert-password
//! hostssl   all      carol       all            scram-sha-256       clientcert=verify-full
//! ```
//!
//! The first rule matching the connection type, the user and the address
//! decides. `host all root all cert-password` is always put first (unless
//! an equivalent first rule exists), so root can always log in with a
//! certificate or a password. The default configuration is
//! `host all all all cert-password`.

/// The cluster setting holding the HBA configuration (CockroachDB's name);
/// when set, it replaces `--hba-conf` on every node.
pub const HBA_SETTING: &str = "server.host_based_authentication.configuration";

use std::net::IpAddr;
use std::str::FromStr;

use crate::ServerError;

/// Connection types a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// TLS or not.
    Host,
    /// TLS only.
    HostSsl,
    /// Plaintext only (needs `--accept-sql-without-tls`).
    HostNoSsl,
    /// Unix sockets: accepted for compatibility; moat has none, so never matches.
    Local,
}

/// Authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A client certificate naming the user.
    Cert,
    /// A cleartext password (TLS only), checked against the stored verifier.
    Password,
    /// SCRAM-SHA-256, with channel binding (SCRAM-SHA-256-PLUS) offered.
    ScramSha256,
    /// A certificate if the client presents one, else SCRAM-SHA-256.
    CertPassword,
    /// Same as `cert-password` (CockroachDB's spelling for SCRAM).
    CertScramSha256,
    /// Both a certificate naming the user and the password (SCRAM).
    CertAndPassword,
    /// No check.
    Trust,
    /// Always refuse.
    Reject,
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cert" => Method::Cert,
            "password" => Method::Password,
            "scram-sha-256" => Method::ScramSha256,
            "cert-password" => Method::CertPassword,
            "cert-scram-sha-256" => Method::CertScramSha256,
            "cert-and-password" => Method::CertAndPassword,
            "trust" => Method::Trust,
            "reject" => Method::Reject,
            "md5" => return Err("md5 is not supported: use scram-sha-256 or password".into()),
            "gss" | "ldap" | "jwt_token" | "ident" | "peer" | "radius" | "pam" | "sspi" => {
                return Err(format!("method {s:?} is not supported by moat"))
            }
            other => return Err(format!("unknown authentication method {other:?}")),
        })
    }
}

impl Method {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Method::Cert => "cert",
            Method::Password => "password",
            Method::ScramSha256 => "scram-sha-256",
            Method::CertPassword => "cert-password",
            Method::CertScramSha256 => "cert-scram-sha-256",
            Method::CertAndPassword => "cert-and-password",
            Method::Trust => "trust",
            Method::Reject => "reject",
        }
    }
}

/// Which addresses a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Any address.
    All,
    /// A network: address and prefix length.
    Net(IpAddr, u8),
}

impl Address {
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Address::All => true,
            Address::Net(net, len) => {
                let ip = match (net, ip) {
                    (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                    _ => ip,
                };
                match (net, ip) {
                    (IpAddr::V4(n), IpAddr::V4(a)) => {
                        let mask = if *len == 0 { 0 } else { u32::MAX << (32 - *len as u32) };
                        u32::from(*n) & mask == u32::from(a) & mask
                    }
                    (IpAddr::V6(n), IpAddr::V6(a)) => {
                        let mask = if *len == 0 { 0 } else { u128::MAX << (128 - *len as u32) };
                        u128::from(*n) & mask == u128::from(a) & mask
                    }
                    _ => false,
                }
            }
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Connection type.
    pub conn_type: ConnType,
    /// Users (`None` = all).
    pub users: Option<Vec<String>>,
    /// Addresses.
    pub address: Address,
    /// Method.
    pub method: Method,
    /// The original line (for logs and messages).
    pub line: String,
}

impl Rule {
    /// Whether the rule applies.
    pub fn matches(&self, tls: bool, user: &str, ip: IpAddr) -> bool {
        let type_ok = match self.conn_type {
            ConnType::Host => true,
            ConnType::HostSsl => tls,
            ConnType::HostNoSsl => !tls,
            ConnType::Local => false,
        };
        type_ok && self.users.as_ref().is_none_or(|u| u.iter().any(|x| x == user)) && self.address.contains(ip)
    }
}

/// A parsed, normalised HBA configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaConfig {
    /// Rules in order (the mandatory root rule first).
    pub rules: Vec<Rule>,
}

/// The mandatory rule for root.
pub const ROOT_RULE: &str = "host all root all cert-password";
/// The default configuration.
pub const DEFAULT_HBA: &str = "host all all all cert-password";

fn split_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_rule(line: &str, lineno: usize) -> Result<Rule, ServerError> {
    let bad = |why: String| ServerError::Invalid(format!("HBA line {lineno} ({line:?}): {why}"));
    let f = split_fields(line);
    let conn_type = match f.first().map(String::as_str) {
        Some("host") => ConnType::Host,
        Some("hostssl") => ConnType::HostSsl,
        Some("hostnossl") => ConnType::HostNoSsl,
        Some("local") => ConnType::Local,
        Some(other) => {
            return Err(bad(format!(
                "unknown connection type {other:?} (host, hostssl, hostnossl, local)"
            )))
        }
        None => return Err(bad("empty rule".into())),
    };
    let min = if conn_type == ConnType::Local { 4 } else { 5 };
    if f.len() < min {
        return Err(bad("too few fields: TYPE DATABASE USER ADDRESS METHOD [OPTIONS]".into()));
    }
    if f[1] != "all" {
        return Err(bad(format!(
            "database must be \"all\" (per-database rules are not supported), not {:?}",
            f[1]
        )));
    }
    let users = if f[2] == "all" {
        None
    } else {
        let mut v = Vec::new();
        for u in f[2].split(',').filter(|u| !u.is_empty()) {
            v.push(moat_pki::username::normalize(u));
        }
        Some(v)
    };
    let mut i = 3;
    let address = if conn_type == ConnType::Local {
        Address::All
    } else {
        let a = &f[3];
        i = 4;
        if a == "all" || a == "0.0.0.0/0" || a == "::/0" {
            Address::All
        } else if let Some((ip, len)) = a.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| bad(format!("invalid address {a:?}")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad(format!("invalid prefix in {a:?}")))?;
            Address::Net(ip, len)
        } else if let Ok(ip) = a.parse::<IpAddr>() {
            // IP followed by a separate mask.
            let mask: IpAddr = f
                .get(4)
                .and_then(|m| m.parse().ok())
                .ok_or_else(|| bad(format!("address {a:?} needs a /prefix or a mask")))?;
            i = 5;
            let len = match (ip, mask) {
                (IpAddr::V4(_), IpAddr::V4(m)) if u32::from(m).leading_ones() == u32::from(m).count_ones() => {
                    u32::from(m).count_ones() as u8
                }
                (IpAddr::V6(_), IpAddr::V6(m)) if u128::from(m).leading_ones() == u128::from(m).count_ones() => {
                    u128::from(m).count_ones() as u8
                }
                _ => {
                    return Err(bad(format!(
                        "mask {mask} does not fit address {a:?}: use a contiguous mask of the same family, or a /prefix"
                    )))
                }
            };
            Address::Net(ip, len)
        } else {
            return Err(bad(format!("hostname-based HBA rules are not supported ({a:?})")));
        }
    };
    let method_text = f.get(i).ok_or_else(|| bad("missing method".into()))?;
    let mut method: Method = method_text.parse().map_err(bad)?;
    for opt in &f[i + 1..] {
        match (opt.split_once('='), method) {
            (Some(("clientcert", "verify-full")), Method::Password | Method::ScramSha256) => {
                method = Method::CertAndPassword
            }
            (Some(("clientcert", v)), _) => {
                return Err(bad(format!(
                "clientcert={v} is not supported here (only clientcert=verify-full on password or scram-sha-256 rules)"
            )))
            }
            _ => return Err(bad(format!("unknown option {opt:?}"))),
        }
    }
    if method == Method::Cert && conn_type == ConnType::HostNoSsl {
        return Err(bad("cert can never match a hostnossl connection".into()));
    }
    Ok(Rule {
        conn_type,
        users,
        address,
        method,
        line: line.trim().to_string(),
    })
}

impl HbaConfig {
    /// Parses a configuration (`#` comments, one rule per line) and puts the
    /// mandatory root rule first. An empty text means the default; a text
    /// with only comments is refused.
    pub fn parse(text: &str) -> Result<HbaConfig, ServerError> {
        let mut rules = Vec::new();
        let mut saw_anything = false;
        for (n, raw) in text.lines().enumerate() {
            saw_anything |= !raw.trim().is_empty();
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            rules.push(parse_rule(line, n + 1)?);
        }
        if rules.is_empty() {
            if saw_anything {
                return Err(ServerError::Invalid(
                    "the HBA configuration has no entries; give at least one rule, or none at all for the default"
                        .into(),
                ));
            }
            rules.push(parse_rule(DEFAULT_HBA, 1)?);
        }
        let root = parse_rule(ROOT_RULE, 0)?;
        let first_is_root = rules.first().is_some_and(|r| {
            // CockroachDB accepts the rule itself or its loopback-only variant
            // in first place; anything narrower would lock root out.
            let loopback = Address::Net(IpAddr::from([127, 0, 0, 1]), 32);
            r.users.as_deref() == Some(&["root".to_string()][..])
                && r.method == Method::CertPassword
                && r.conn_type == ConnType::Host
                && (r.address == Address::All || r.address == loopback)
        });
        if !first_is_root {
            rules.insert(0, root);
        }
        Ok(HbaConfig { rules })
    }

    /// The default configuration.
    pub fn default_config() -> HbaConfig {
        Self::parse("").expect("the default configuration parses")
    }

    /// The first rule that applies, if any.
    pub fn find(&self, tls: bool, user: &str, ip: IpAddr) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(tls, user, ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_and_root_rule() {
        let c = HbaConfig::default_config();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.find(true, "root", ip("1.2.3.4")).unwrap().line, ROOT_RULE);
        assert_eq!(
            c.find(true, "alice", ip("1.2.3.4")).unwrap().method,
            Method::CertPassword
        );
    }

    #[test]
    fn first_match_wins_with_types_users_and_networks() {
        let c = HbaConfig::parse(
            "# comment\nhostssl all alice,\"Bob\" 10.0.0.0/8 cert\nhostnossl all all 127.0.0.1 255.255.255.255 password\nhost all carol all scram-sha-256 clientcert=verify-full\nhost all all ::1/128 trust\nhost all all all reject\n",
        )
        .unwrap();
        assert_eq!(c.rules[0].line, ROOT_RULE);
        assert_eq!(c.find(true, "alice", ip("10.1.2.3")).unwrap().method, Method::Cert);
        assert_eq!(c.find(true, "bob", ip("10.1.2.3")).unwrap().method, Method::Cert);
        assert_eq!(c.find(true, "alice", ip("11.1.2.3")).unwrap().method, Method::Reject);
        assert_eq!(c.find(false, "dave", ip("127.0.0.1")).unwrap().method, Method::Password);
        assert_eq!(c.find(true, "dave", ip("127.0.0.1")).unwrap().method, Method::Reject);
        assert_eq!(
            c.find(true, "carol", ip("1.1.1.1")).unwrap().method,
            Method::CertAndPassword
        );
        assert_eq!(c.find(true, "dave", ip("::1")).unwrap().method, Method::Trust);
        assert_eq!(
            c.find(true, "root", ip("9.9.9.9")).unwrap().method,
            Method::CertPassword
        );
        // IPv4-mapped IPv6 peers match IPv4 networks.
        assert_eq!(
            c.find(true, "alice", ip("::ffff:10.0.0.1")).unwrap().method,
            Method::Cert
        );
    }

    #[test]
    fn a_narrower_root_rule_does_not_displace_the_mandatory_one() {
        // Found by fuzzing (fuzz/regressions/hba/root-rule-displaced-by-address).
        let c = HbaConfig::parse("host all root 10.0.0.0/8 cert-password\n").unwrap();
        assert_eq!(c.rules[0].line, ROOT_RULE);
        assert_eq!(
            c.find(true, "root", ip("192.0.2.1")).unwrap().method,
            Method::CertPassword
        );
        let c = HbaConfig::parse("host all root 127.0.0.1/32 cert-password\n").unwrap();
        assert_eq!(c.rules.len(), 1, "the loopback variant is accepted in first place");
    }

    #[test]
    fn refusals() {
        for (text, needle) in [
            ("host db all all cert", "database must be \"all\""),
            ("host all all example.com cert", "hostname-based"),
            ("host all all all md5", "md5 is not supported"),
            ("host all all all cert frob=1", "unknown option"),
            ("hostnossl all all all cert", "never match"),
            ("bogus all all all cert", "unknown connection type"),
            ("host all all", "too few fields"),
            ("host all all 10.0.0.0/33 cert", "invalid prefix"),
            // Found by fuzzing (fuzz/regressions/hba/ipv4-address-ipv6-mask).
            ("host all all 10.0.0.0 ffff:ffff:ffff:ffff:: trust", "does not fit"),
            ("host all all 10.0.0.0 255.0.255.0 trust", "contiguous"),
            ("# only a comment", "no entries"),
        ] {
            let e = HbaConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
