//! Authentication at connection startup, CockroachDB's way, with the HBA
//! configuration choosing the method per connection.
//!
//! * Plaintext is refused (SQLSTATE 08P01) unless `--accept-sql-without-tls`.
//! * A presented client certificate decides the identity: it must name the
//!   requested user (after the principal map), whatever the method; there is
//!   no falling back to a password once a certificate was presented.
//! * Passwords are checked against SCRAM-SHA-256 verifiers only. A user that
//!   does not exist, or has no password, goes through the same exchange with a
//!   mock verifier and fails with the same message, so a password guesser
//!   learns nothing about which users exist.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use moat_tls::principal::{IdentityPolicy, PrincipalCache};
use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rustls_pki_types::CertificateDer;

use crate::db::Database;
use crate::hba::{HbaConfig, Method};
use crate::scram::Verifier;
use crate::users;

/// What every connection's authentication needs from the node.
pub struct AuthContext {
    /// The store (users and verifiers).
    pub db: Arc<Database>,
    /// The HBA rules of the node's own configuration (`--hba-conf` or the default).
    pub hba: HbaConfig,
    /// The rules in force: the cluster setting
    /// `server.host_based_authentication.configuration` when set, else `hba`.
    current_hba: std::sync::RwLock<Arc<HbaConfig>>,
    /// Principal map and pinned DNs.
    pub policy: IdentityPolicy,
    /// Principals of client certificates seen before (with `policy.map`).
    principals: PrincipalCache,
    /// `--accept-sql-without-tls`.
    pub accept_plaintext: bool,
    /// Key for mock SCRAM salts (per process).
    mock_key: [u8; 32],
    /// The users, kept in memory for logins.
    users: Arc<Mutex<UserCache>>,
}

/// The users and their verifiers as the store last had them, with one
/// connection kept open to notice changes: SQLite's `PRAGMA data_version`
/// changes whenever another connection (a user statement, the Raft state
/// machine, a snapshot install) commits to the database, and the users are
/// then read again. A login whose check finds nothing changed touches no
/// table and needs no blocking thread.
#[derive(Default)]
struct UserCache {
    conn: Option<rusqlite::Connection>,
    /// `PRAGMA data_version` read before `users` (so a change that lands
    /// in between makes the next check reload, never the reverse).
    version: Option<i64>,
    /// Name → verifier (`None`: no password).
    users: HashMap<String, Option<Verifier>>,
}

impl UserCache {
    fn data_version(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
        conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))
    }

    /// The user from memory when the store has not changed since it was
    /// read; `None` when it must be read again (or SQLite was busy). Never
    /// waits: SQLite's busy timeout is off for this check.
    fn fresh(&self, user: &str) -> Option<(bool, Option<Verifier>)> {
        let conn = self.conn.as_ref()?;
        let version = self.version?;
        conn.busy_timeout(Duration::ZERO).ok()?;
        let now = Self::data_version(conn).ok()?;
        (now == version).then(|| match self.users.get(user) {
            Some(v) => (true, v.clone()),
            None => (false, None),
        })
    }

    /// Reads the users again (on a blocking thread).
    fn reload(&mut self, db: &Database) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(db.connect().map_err(|e| e.to_string())?);
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err("no connection".into());
        };
        let read = || -> rusqlite::Result<(i64, HashMap<String, Option<Verifier>>)> {
            conn.busy_timeout(Duration::from_secs(5))?;
            let version = Self::data_version(conn)?;
            let users = users::all(conn)?
                .into_iter()
                .map(|(name, scram)| (name, scram.and_then(|t| Verifier::parse(&t))))
                .collect();
            Ok((version, users))
        };
        match read() {
            Ok((version, users)) => {
                self.version = Some(version);
                self.users = users;
                Ok(())
            }
            Err(e) => {
                // Reopen next time.
                *self = UserCache::default();
                Err(format!("user store error: {e}"))
            }
        }
    }
}

impl AuthContext {
    /// A context for a node.
    pub fn new(db: Arc<Database>, hba: HbaConfig, policy: IdentityPolicy, accept_plaintext: bool) -> Self {
        let mut mock_key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut mock_key).expect("system randomness");
        AuthContext {
            db,
            current_hba: std::sync::RwLock::new(Arc::new(hba.clone())),
            hba,
            principals: PrincipalCache::new(policy.map.clone()),
            policy,
            accept_plaintext,
            mock_key,
            users: Arc::new(Mutex::new(UserCache::default())),
        }
    }

    /// The HBA rules in force.
    pub fn hba(&self) -> Arc<HbaConfig> {
        self.current_hba.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies the cluster's HBA setting (`None`: back to the node's own
    /// rules). A value that does not parse keeps the rules in force (it was
    /// validated before it was replicated, so this only happens across
    /// versions) and is logged.
    pub fn set_cluster_hba(&self, text: Option<&str>) {
        let next = match text {
            None => Arc::new(self.hba.clone()),
            Some(t) => match HbaConfig::parse(t) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    tracing::error!("the cluster's HBA setting does not parse, keeping the rules in force: {e}");
                    return;
                }
            },
        };
        *self.current_hba.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// A verifier that never matches, with a salt stable per user name, for
    /// users that do not exist or have no password.
    fn mock_verifier(&self, user: &str) -> Verifier {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.mock_key),
            user.as_bytes(),
        );
        let mut stored = vec![0u8; 32];
        let mut server = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut stored).expect("system randomness");
        aws_lc_rs::rand::fill(&mut server).expect("system randomness");
        Verifier {
            iterations: crate::scram::ITERATIONS,
            salt: tag.as_ref()[..16].to_vec(),
            stored_key: stored,
            server_key: server,
        }
    }
}

enum State {
    Start,
    AwaitPassword {
        user: String,
        verifier: Option<Verifier>,
        method: Method,
    },
    AwaitSaslInitial {
        user: String,
        secret: Option<Verifier>,
        method: Method,
    },
    AwaitSaslFinal {
        user: String,
        real: bool,
        waiting: Box<ScramServerAuthWaitingForClientFinal>,
        method: Method,
    },
    Done,
}

/// The per-connection startup handler.
pub struct AuthStartup {
    ctx: Arc<AuthContext>,
    /// The certificate this connection's server presented (for SCRAM channel binding).
    server_cert: Option<CertificateDer<'static>>,
    state: Mutex<State>,
}

impl AuthStartup {
    /// A handler for one connection; `server_cert` is the leaf the TLS
    /// handshake presented (None over plaintext).
    pub fn new(ctx: Arc<AuthContext>, server_cert: Option<CertificateDer<'static>>) -> Self {
        AuthStartup {
            ctx,
            server_cert,
            state: Mutex::new(State::Start),
        }
    }

    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn take(&self) -> State {
        std::mem::replace(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()), State::Done)
    }
}

/// A SASLInitialResponse body: a NUL-terminated mechanism name, an i32
/// length (-1 for none) and that many bytes.
fn sasl_initial_response_is_well_formed(body: &[u8]) -> bool {
    let Some(nul) = body.iter().position(|b| *b == 0) else {
        return false;
    };
    let rest = &body[nul + 1..];
    if rest.len() < 4 {
        return false;
    }
    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    len == -1 || (len >= 0 && len as usize <= rest.len() - 4)
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into())))
}

fn refuse<C: ClientInfo>(client: &C, user: &str, method: &str, code: &str, message: String) -> PgWireError {
    metrics::counter!("sql.auth.failures", "method" => method.to_string()).increment(1);
    tracing::warn!(peer = %client.socket_addr(), user, method, "authentication failed: {message}");
    fatal(code, message)
}

fn password_failed<C: ClientInfo>(client: &C, user: &str, method: Method) -> PgWireError {
    refuse(
        client,
        user,
        method.name(),
        "28P01",
        format!("password authentication failed for user {user:?}"),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> PgWireResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fatal("XX000", format!("internal error: {e}")))
}

impl AuthStartup {
    /// Whether the user exists, and its verifier: from memory when the
    /// store has not changed, else read again on a blocking thread.
    async fn lookup(&self, user: &str) -> PgWireResult<(bool, Option<Verifier>)> {
        // The quick check, here on the async thread: it never waits (a
        // busy cache or store falls through to the blocking path).
        if let Ok(cache) = self.ctx.users.try_lock() {
            if let Some(found) = cache.fresh(user) {
                return Ok(found);
            }
        }
        let db = self.ctx.db.clone();
        let cache = self.ctx.users.clone();
        let u = user.to_string();
        blocking(move || -> Result<(bool, Option<Verifier>), String> {
            let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(found) = guard.fresh(&u) {
                return Ok(found);
            }
            guard.reload(&db)?;
            Ok(match guard.users.get(&u) {
                Some(v) => (true, v.clone()),
                None => (false, None),
            })
        })
        .await?
        .map_err(|e| fatal("XX000", e))
    }

    async fn succeed<C>(&self, client: &mut C, user: &str, method: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.set(State::Done);
        metrics::counter!("sql.auth.successes", "method" => method.to_string()).increment(1);
        tracing::info!(peer = %client.socket_addr(), user, method, tls = client.is_secure(), "authenticated");
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = crate::sql::SERVER_VERSION.into();
        params.is_superuser = user == users::ROOT;
        params.session_authorization = Some(user.to_string());
        finish_authentication(client, &params).await
    }

    async fn start_scram<C>(&self, client: &mut C, user: String, method: Method) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, verifier) = self.lookup(&user).await?;
        let mut mechanisms = Vec::new();
        if client.is_secure() && self.server_cert.is_some() {
            mechanisms.push("SCRAM-SHA-256-PLUS".to_string());
        }
        mechanisms.push("SCRAM-SHA-256".to_string());
        self.set(State::AwaitSaslInitial {
            user,
            secret: verifier,
            method,
        });
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        client
            .send(PgWireBackendMessage::Authentication(Authentication::SASL(mechanisms)))
            .await?;
        Ok(())
    }

    async fn on_startup_message<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tls = client.is_secure();
        if !tls && !self.ctx.accept_plaintext {
            return Err(refuse(
                client,
                "",
                "none",
                "08P01",
                "node is running secure mode, SSL connection required".into(),
            ));
        }
        let raw_user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        let user = moat_pki::username::normalize(&raw_user);
        if user.is_empty() {
            return Err(refuse(client, "", "none", "28000", "no user name specified".into()));
        }
        client.metadata_mut().insert(METADATA_USER.to_string(), user.clone());
        let ip: IpAddr = client.socket_addr().ip();
        let hba = self.ctx.hba();
        let Some(rule) = hba.find(tls, &user, ip) else {
            return Err(refuse(
                client,
                &user,
                "none",
                "28000",
                format!(
                    "no HBA rule allows host {ip}, user {user:?}, {}",
                    if tls { "SSL on" } else { "SSL off" }
                ),
            ));
        };
        let method = rule.method;
        // A presented certificate decides the identity, whatever the method.
        let cert_ok = match client.client_certificates().and_then(|c| c.first()) {
            Some(leaf) => match self
                .ctx
                .principals
                .of(leaf)
                .and_then(|p| self.ctx.policy.authorize_principals(&p, &user))
            {
                Ok(()) => true,
                Err(why) => return Err(refuse(client, &user, method.name(), "28000", why)),
            },
            None => false,
        };
        match method {
            Method::Reject => Err(refuse(
                client,
                &user,
                method.name(),
                "28000",
                format!("authentication for user {user:?} rejected by HBA rule {:?}", rule.line),
            )),
            Method::Trust => self.finish_if_exists(client, &user, method, "trust").await,
            Method::Cert if !cert_ok => Err(refuse(
                client,
                &user,
                method.name(),
                "28000",
                format!("certificate authentication failed for user {user:?}: no client certificate was presented"),
            )),
            Method::Cert => self.finish_if_exists(client, &user, method, "cert").await,
            Method::CertPassword | Method::CertScramSha256 if cert_ok => {
                self.finish_if_exists(client, &user, method, "cert").await
            }
            Method::CertAndPassword if !cert_ok => Err(refuse(
                client,
                &user,
                method.name(),
                "28000",
                format!("user {user:?} must present a client certificate and the password"),
            )),
            Method::Password => {
                if !tls {
                    return Err(refuse(
                        client,
                        &user,
                        method.name(),
                        "28000",
                        "password authentication requires TLS".into(),
                    ));
                }
                let (_, verifier) = self.lookup(&user).await?;
                self.set(State::AwaitPassword { user, verifier, method });
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword))
                    .await?;
                Ok(())
            }
            Method::ScramSha256 | Method::CertPassword | Method::CertScramSha256 | Method::CertAndPassword => {
                self.start_scram(client, user, method).await
            }
        }
    }

    async fn finish_if_exists<C>(&self, client: &mut C, user: &str, method: Method, how: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (exists, _) = self.lookup(user).await?;
        if !exists {
            return Err(refuse(
                client,
                user,
                method.name(),
                "28000",
                format!("role {user:?} does not exist"),
            ));
        }
        self.succeed(client, user, how).await
    }
}

#[async_trait]
impl StartupHandler for AuthStartup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if !matches!(*self.state.lock().unwrap_or_else(|p| p.into_inner()), State::Start) {
                    return Err(fatal("08P01", "unexpected startup message"));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.on_startup_message(client).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => match self.take() {
                State::AwaitPassword { user, verifier, method } => {
                    let pw = msg.into_password()?.password;
                    let ok = match verifier {
                        Some(v) => blocking(move || v.matches(&pw)).await?,
                        None => false,
                    };
                    if ok {
                        self.succeed(client, &user, method.name()).await
                    } else {
                        Err(password_failed(client, &user, method))
                    }
                }
                State::AwaitSaslInitial { user, secret, method } => {
                    // pgwire's decoder indexes the body unchecked: validate it first.
                    if let PasswordMessageFamily::Raw(body) = &msg {
                        if !sasl_initial_response_is_well_formed(body) {
                            return Err(refuse(
                                client,
                                &user,
                                method.name(),
                                "08P01",
                                "malformed SASLInitialResponse message".into(),
                            ));
                        }
                    }
                    let init = msg.into_sasl_initial_response()?;
                    let mut scram = ScramServerAuth::new();
                    if client.is_secure() {
                        if let Some(cert) = &self.server_cert {
                            let pem = moat_pki::inspect::certs_to_pem(std::slice::from_ref(cert));
                            scram.configure_certificate(pem.as_bytes())?;
                        }
                    }
                    if init.auth_method != "SCRAM-SHA-256" && init.auth_method != "SCRAM-SHA-256-PLUS" {
                        return Err(refuse(
                            client,
                            &user,
                            method.name(),
                            "28000",
                            format!("unsupported SASL mechanism {:?}", init.auth_method),
                        ));
                    }
                    let real = secret.is_some();
                    let secret: ScramSecret = secret
                        .unwrap_or_else(|| self.ctx.mock_verifier(&user))
                        .to_scram_secret();
                    let data = init.data.unwrap_or_default();
                    let (server_first, waiting) = match scram.on_client_first_message_with_secret(&data, secret) {
                        Ok(x) => x,
                        Err(e) => {
                            return Err(refuse(
                                client,
                                &user,
                                method.name(),
                                "28000",
                                format!("SCRAM exchange refused: {e}"),
                            ))
                        }
                    };
                    self.set(State::AwaitSaslFinal {
                        user,
                        real,
                        waiting: Box::new(waiting),
                        method,
                    });
                    client
                        .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                            Bytes::from(server_first),
                        )))
                        .await?;
                    Ok(())
                }
                State::AwaitSaslFinal {
                    user,
                    real,
                    waiting,
                    method,
                } => {
                    let resp = msg.into_sasl_response()?;
                    match waiting.on_client_final_message(&resp.data) {
                        Ok(server_final) if real => {
                            client
                                .send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                                    Bytes::from(server_final),
                                )))
                                .await?;
                            self.succeed(client, &user, method.name()).await
                        }
                        Ok(_) => Err(password_failed(client, &user, method)),
                        Err(PgWireError::InvalidPassword(_)) => Err(password_failed(client, &user, method)),
                        Err(e) => Err(refuse(
                            client,
                            &user,
                            method.name(),
                            "28000",
                            format!("SCRAM exchange refused: {e}"),
                        )),
                    }
                }
                _ => Err(fatal("08P01", "unexpected authentication message")),
            },
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sasl_initial_response_is_well_formed as ok;

    #[test]
    fn sasl_initial_response_bodies() {
        // Found by fuzzing (fuzz/regressions/pg_startup/sasl-initial-response-*):
        // pgwire's decoder panics on these.
        assert!(!ok(b"X\0"));
        assert!(!ok(b"X\0\0\0\x03\xe8"));
        assert!(!ok(b"X\0\xff\xff\xff\xfe"));
        assert!(!ok(b"no terminator"));
        assert!(ok(b"SCRAM-SHA-256\0\xff\xff\xff\xff"));
        assert!(ok(b"SCRAM-SHA-256\0\0\0\0\x03abc"));
    }
}
