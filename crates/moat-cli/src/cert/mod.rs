//! `moat cert ...`: the PKI commands.

mod list;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use moat_pki::inspect::CertInfo;
use moat_pki::keys::KeyType;
use moat_pki::lifetime::parse_lifetime;
use moat_pki::ops::{self, CreateOptions, Outcome, SignCsrOptions};
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
        /// Host names and IP addresses of the node.
        hosts: Vec<String>,
    },
    /// Create client.<user>.crt/.key for a SQL user.
    CreateClient {
        #[command(flatten)]
        args: CreateArgs,
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
    /// List the certificates of the certs directory, with problems flagged.
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
        CertCommand::CreateNode { args, hosts } => ops::create_node(&args.options()?, &hosts)?,
        CertCommand::CreateClient {
            args,
            user,
            also_generate_pkcs8_key,
        } => ops::create_client(&args.options()?, &user, also_generate_pkcs8_key)?,
        CertCommand::CreateUi { args, hosts } => ops::create_ui(&args.options()?, &hosts)?,
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
            csr,
            profile,
            hosts,
            user,
            out,
        } => ops::sign_csr(
            &args.options()?,
            &SignCsrOptions {
                csr,
                profile: profile.into(),
                user,
                hosts,
                out,
            },
        )?,
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

fn describe(c: &CertInfo) -> String {
    let mut names: Vec<String> = c.dns_names.clone();
    names.extend(c.ip_addresses.iter().map(|i| i.to_string()));
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(", names {}", names.join(","))
    };
    format!(
        "  subject {}, {} key{}, serial {}, expires {}",
        c.subject,
        c.key_type,
        names,
        c.serial,
        c.not_after.date()
    )
}
