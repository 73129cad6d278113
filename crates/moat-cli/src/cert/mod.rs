//! `moat cert ...`: the PKI commands.

mod list;

use std::path::PathBuf;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use moat_pki::crl;
use moat_pki::inspect::CertInfo;
use moat_pki::keys::KeyType;
use moat_pki::lifetime::parse_lifetime;
use moat_pki::ops::{self, CreateOptions, Outcome, RevokeOptions, RevokeOutcome, RevokeTarget, SignCsrOptions};
use moat_pki::profile::Profile;

/// Flags every `cert` command takes.
#[derive(Args, Clone)]
pub struct DirArgs {
    /// The certs directory (CockroachDB layout).
    #[arg(long, env = "MOAT_CERTS_DIR", default_value_t = default_certs_dir(), hide_env_values = true)]
    certs_dir: String,
}

/// Flags of the commands that make keys and certificates.
#[derive(Args, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// The CA's private key: created by create-*-ca, read by the others.
    #[arg(long, env = "MOAT_CA_KEY", default_value = "", hide_default_value = true)]
    ca_key: String,
    /// The CA certificate to sign with (default: ca.crt; ca-client.crt for
    /// clients and ca-ui.crt for the console when they exist). Use it for an
    /// intermediate CA kept outside the certs directory.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Certificate lifetime: 87840h, 90d, 10y ... (default 87840h for CAs, 43920h otherwise).
    #[arg(long)]
    lifetime: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
    /// Type of the new key.
    #[arg(long, value_enum, default_value_t = KeyTypeArg::EcdsaP256)]
    key_type: KeyTypeArg,
    /// RSA modulus size in bits (with --key-type rsa).
    #[arg(long, default_value_t = 2048)]
    key_size: u32,
}

/// Flags of the commands that issue leaf certificates.
#[derive(Args, Clone)]
pub struct LeafArgs {
    /// OCSP responder URL to write in the certificate (Authority Information Access).
    #[arg(long, value_name = "URL")]
    ocsp_url: Option<String>,
}

/// Flags of `revoke`.
#[derive(Args, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["cert", "serial", "refresh"])))]
pub struct RevokeArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// The certificate file to revoke (a path, or a file name in the certs directory).
    cert: Option<PathBuf>,
    /// Revoke a serial number (hex) instead, in the CRL of ca.crt (or --client-ca, --ui-ca, --ca-cert).
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
    /// Revoke nothing: re-sign the CRL with fresh dates (do it before its next update), or make an empty one.
    #[arg(long, conflicts_with = "reason")]
    refresh: bool,
    /// Revocation reason (RFC 5280 name).
    #[arg(long, value_parser = PossibleValuesParser::new(crl::REASON_NAMES.iter().copied()), ignore_case = true)]
    reason: Option<String>,
    /// The CA's private key.
    #[arg(long, env = "MOAT_CA_KEY", default_value = "", hide_default_value = true)]
    ca_key: String,
    /// The issuing CA's certificate (default: the certificate's issuer among ca.crt, ca-client.crt and
    /// ca-ui.crt; ca.crt for --serial and --refresh). The CRL is written in the certs directory as <name>.crl.
    #[arg(long, conflicts_with_all = ["client_ca", "ui_ca"])]
    ca_cert: Option<PathBuf>,
    /// Use the client CA (ca-client.crt, CRL ca-client.crl).
    #[arg(long, conflicts_with = "ui_ca")]
    client_ca: bool,
    /// Use the console CA (ca-ui.crt, CRL ca-ui.crl).
    #[arg(long)]
    ui_ca: bool,
    /// Time from now to the CRL's next update: 720h, 30d, 1y ...
    #[arg(long, default_value = "30d")]
    crl_lifetime: String,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum KeyTypeArg {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum LeafProfile {
    Node,
    Client,
    Ui,
}

impl From<LeafProfile> for Profile {
    fn from(p: LeafProfile) -> Profile {
        match p {
            LeafProfile::Node => Profile::Node,
            LeafProfile::Client => Profile::Client,
            LeafProfile::Ui => Profile::Ui,
        }
    }
}

/// The `cert` subcommands.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Create the cluster CA: key at --ca-key, certificate ca.crt (an existing ca.crt is kept after the new one).
    CreateCa {
        #[command(flatten)]
        args: CreateArgs,
        /// Reuse the existing key at --ca-key (to renew the CA with the same key).
        #[arg(long)]
        allow_ca_key_reuse: bool,
    },
    /// Create a separate CA for client certificates (ca-client.crt).
    CreateClientCa {
        #[command(flatten)]
        args: CreateArgs,
        /// Reuse the existing key at --ca-key.
        #[arg(long)]
        allow_ca_key_reuse: bool,
    },
    /// Create a separate CA for the console certificate (ca-ui.crt).
    CreateUiCa {
        #[command(flatten)]
        args: CreateArgs,
        /// Reuse the existing key at --ca-key.
        #[arg(long)]
        allow_ca_key_reuse: bool,
    },
    /// Create node.crt/node.key (CN=node, server and client) for the given host names and IPs.
    CreateNode {
        #[command(flatten)]
        args: CreateArgs,
        #[command(flatten)]
        leaf: LeafArgs,
        /// Host names and IP addresses of the node.
        hosts: Vec<String>,
    },
    /// Create client.<user>.crt/.key for a SQL user.
    CreateClient {
        #[command(flatten)]
        args: CreateArgs,
        #[command(flatten)]
        leaf: LeafArgs,
        /// The SQL user (normalised to lower case).
        user: String,
        /// Also write client.<user>.key.pk8 (DER PKCS#8, for Java drivers).
        #[arg(long)]
        also_generate_pkcs8_key: bool,
    },
    /// Create ui.crt/ui.key for the HTTPS console.
    CreateUi {
        #[command(flatten)]
        args: CreateArgs,
        #[command(flatten)]
        leaf: LeafArgs,
        /// Host names and IP addresses of the console.
        hosts: Vec<String>,
    },
    /// Make a key and a CSR here (the key never leaves): node <hosts...>, client <user>, ui <hosts...>.
    CreateCsr {
        #[command(flatten)]
        dir: DirArgs,
        /// What the certificate is for.
        #[arg(value_enum)]
        profile: LeafProfile,
        /// Host names (node, ui) or the user name (client).
        names: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        overwrite: bool,
        /// Type of the new key.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::EcdsaP256)]
        key_type: KeyTypeArg,
        /// RSA modulus size in bits (with --key-type rsa).
        #[arg(long, default_value_t = 2048)]
        key_size: u32,
    },
    /// Sign a CSR as the CA: the CA decides the profile, names and lifetime.
    SignCsr {
        #[command(flatten)]
        args: CreateArgs,
        #[command(flatten)]
        leaf: LeafArgs,
        /// The CSR file (PEM).
        csr: PathBuf,
        /// The profile to grant.
        #[arg(long, value_enum)]
        profile: LeafProfile,
        /// Hosts to grant (node, ui): the CSR may ask only for these. Repeat or comma-separate.
        #[arg(long = "host", value_delimiter = ',')]
        hosts: Vec<String>,
        /// The user the client CSR must be for.
        #[arg(long)]
        user: Option<String>,
        /// Where to write the certificate (default: the CSR path with .crt).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate: add it to the CRL of its CA (ca.crl, ca-client.crl or ca-ui.crl).
    Revoke(RevokeArgs),
    /// List the certificates and CRLs of the certs directory, with problems flagged.
    List {
        #[command(flatten)]
        dir: DirArgs,
        /// Output format (default: table on a terminal, tsv otherwise).
        #[arg(long, value_enum)]
        format: Option<list::Format>,
    },
}

fn default_certs_dir() -> String {
    match std::env::var("HOME") {
        Ok(h) if !h.is_empty() => format!("{h}/.moat-certs"),
        _ => ".moat-certs".into(),
    }
}

fn key_type(kt: KeyTypeArg, bits: u32) -> Result<KeyType> {
    Ok(match kt {
        KeyTypeArg::EcdsaP256 => KeyType::EcdsaP256,
        KeyTypeArg::EcdsaP384 => KeyType::EcdsaP384,
        KeyTypeArg::Ed25519 => KeyType::Ed25519,
        KeyTypeArg::Rsa => KeyType::from_name("rsa", bits)?,
    })
}

impl CreateArgs {
    fn options(&self) -> Result<CreateOptions> {
        let mut o = CreateOptions::new(&self.dir.certs_dir, &self.ca_key);
        o.ca_cert = self.ca_cert.clone();
        o.lifetime = self.lifetime.as_deref().map(parse_lifetime).transpose()?;
        o.overwrite = self.overwrite;
        o.key_type = key_type(self.key_type, self.key_size)?;
        Ok(o)
    }

    fn leaf_options(&self, leaf: &LeafArgs) -> Result<CreateOptions> {
        let mut o = self.options()?;
        o.ocsp_url = leaf.ocsp_url.clone();
        Ok(o)
    }
}

impl RevokeArgs {
    fn options(&self) -> Result<RevokeOptions> {
        let certs_dir = PathBuf::from(&self.dir.certs_dir);
        let target = match (&self.cert, &self.serial) {
            (Some(c), _) => RevokeTarget::Cert(c.clone()),
            (None, Some(s)) => RevokeTarget::Serial(s.clone()),
            (None, None) => RevokeTarget::Refresh,
        };
        let mut o = RevokeOptions::new(&certs_dir, &self.ca_key, target);
        o.ca_cert = if self.client_ca {
            Some(certs_dir.join(moat_pki::layout::CLIENT_CA_CERT))
        } else if self.ui_ca {
            Some(certs_dir.join(moat_pki::layout::UI_CA_CERT))
        } else {
            self.ca_cert.clone()
        };
        o.reason = self.reason.as_deref().map(crl::parse_reason).transpose()?;
        o.crl_lifetime = Some(parse_lifetime(&self.crl_lifetime)?);
        Ok(o)
    }
}

/// Runs a `cert` subcommand.
pub fn run(cmd: CertCommand) -> Result<()> {
    let outcome = match cmd {
        CertCommand::CreateCa {
            args,
            allow_ca_key_reuse,
        } => ops::create_ca(&args.options()?, Profile::Ca, allow_ca_key_reuse)?,
        CertCommand::CreateClientCa {
            args,
            allow_ca_key_reuse,
        } => ops::create_ca(&args.options()?, Profile::ClientCa, allow_ca_key_reuse)?,
        CertCommand::CreateUiCa {
            args,
            allow_ca_key_reuse,
        } => ops::create_ca(&args.options()?, Profile::UiCa, allow_ca_key_reuse)?,
        CertCommand::CreateNode { args, leaf, hosts } => ops::create_node(&args.leaf_options(&leaf)?, &hosts)?,
        CertCommand::CreateClient {
            args,
            leaf,
            user,
            also_generate_pkcs8_key,
        } => ops::create_client(&args.leaf_options(&leaf)?, &user, also_generate_pkcs8_key)?,
        CertCommand::CreateUi { args, leaf, hosts } => ops::create_ui(&args.leaf_options(&leaf)?, &hosts)?,
        CertCommand::CreateCsr {
            dir,
            profile,
            names,
            overwrite,
            key_type: kt,
            key_size,
        } => ops::create_csr(
            dir.certs_dir.as_ref(),
            profile.into(),
            &names,
            key_type(kt, key_size)?,
            overwrite,
        )?,
        CertCommand::SignCsr {
            args,
            leaf,
            csr,
            profile,
            hosts,
            user,
            out,
        } => ops::sign_csr(
            &args.leaf_options(&leaf)?,
            &SignCsrOptions {
                csr,
                profile: profile.into(),
                user,
                hosts,
                out,
            },
        )?,
        CertCommand::Revoke(args) => {
            report_revoke(&ops::revoke(&args.options()?)?);
            return Ok(());
        }
        CertCommand::List { dir, format } => return list::run(dir.certs_dir.as_ref(), format),
    };
    report(&outcome);
    Ok(())
}

fn report(o: &Outcome) {
    for w in &o.warnings {
        eprintln!("warning: {w}");
    }
    for p in &o.written {
        println!("wrote {}", p.display());
    }
    if let Some(c) = &o.cert {
        println!("{}", describe(c));
    }
}

fn report_revoke(o: &RevokeOutcome) {
    for w in &o.warnings {
        eprintln!("warning: {w}");
    }
    let what = match (&o.serial, &o.subject) {
        (Some(s), Some(subj)) => format!("serial {s} ({subj})"),
        (Some(s), None) => format!("serial {s}"),
        _ => String::new(),
    };
    let next = o
        .next_update
        .map(|n| format!(", next update {}", n.date()))
        .unwrap_or_default();
    match &o.already_revoked {
        Some(prev) => {
            let reason = prev
                .reason
                .map(|r| format!(", reason {}", crl::reason_name(r)))
                .unwrap_or_default();
            println!(
                "{what} is already revoked in {} (since {}{reason}); nothing changed",
                o.crl_path.display(),
                prev.revocation_time.date()
            );
        }
        None => {
            for p in &o.written {
                println!("wrote {}", p.display());
            }
            if !what.is_empty() {
                println!("revoked {what}");
            }
            println!(
                "  CRL number {}, {} revoked, signed by {}{next}",
                o.crl_number,
                o.revoked,
                o.ca_cert.display()
            );
        }
    }
}

fn describe(c: &CertInfo) -> String {
    let mut names: Vec<String> = c.dns_names.clone();
    names.extend(c.ip_addresses.iter().map(|i| i.to_string()));
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(", names {}", names.join(","))
    };
    let ocsp = if c.ocsp_urls.is_empty() {
        String::new()
    } else {
        format!(", OCSP {}", c.ocsp_urls.join(","))
    };
    format!(
        "  subject {}, {} key{}, serial {}, expires {}{ocsp}",
        c.subject,
        c.key_type,
        names,
        c.serial,
        c.not_after.date()
    )
}
