//! pgwire's query handlers over a [`Session`]: the simple query protocol
//! (several statements per query, notices, ParameterStatus after SET) and
//! the extended protocol (Parse/Bind/Describe/Execute/Sync). The
//! transaction status in ReadyForQuery always comes from the session.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::{select, Either};
use futures::sink::{Sink, SinkExt};
use futures::stream;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_describe_response, send_ready_for_query, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState, Type, DEFAULT_NAME, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Describe, Execute, Sync as PgSync, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::error::SqlError;
use super::lexer::split;
use super::session::{encode_reply, fields, Encoded, Outcome, Prepared, Reply, Session, Tx};
use crate::db::Database;

/// The query handlers of one client connection.
pub struct QueryHandlers {
    session: Arc<Session>,
    parser: Arc<Parser>,
}

impl QueryHandlers {
    /// Handlers for a new connection on `db`. Nothing is opened: statements
    /// borrow SQLite connections from the node's pool.
    pub fn new(db: Arc<Database>, repl: Option<Arc<dyn crate::cluster::Replicator>>) -> Self {
        QueryHandlers {
            session: Arc::new(Session::new(db, repl)),
            parser: Arc::new(Parser),
        }
    }

    /// The session's transaction status, as sent in ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        status(self.session.tx())
    }
}

fn status(t: Tx) -> TransactionStatus {
    match t {
        Tx::Idle => TransactionStatus::Idle,
        Tx::Open => TransactionStatus::Transaction,
        Tx::Failed => TransactionStatus::Error,
    }
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client.metadata().get(METADATA_USER).cloned().unwrap_or_default()
}

fn is_empty_query(q: &str) -> bool {
    q.chars().all(|c| c == ';' || c.is_whitespace())
}

async fn cancel_receiver<C: ClientInfo>(client: &C) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

/// Parses statements for the extended protocol (no SQLite involved).
#[derive(Debug, Default)]
pub struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let stmts = split(sql).map_err(SqlError::into_pgwire)?;
        match stmts.as_slice() {
            [] => Ok(None),
            [one] => Prepared::new(one, types)
                .map(|p| Some(Arc::new(p)))
                .map_err(SqlError::into_pgwire),
            _ => Err(SqlError::new("42601", "cannot insert multiple commands into a prepared statement").into_pgwire()),
        }
    }

    fn get_parameter_types(&self, _stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(&self, _stmt: &Arc<Prepared>, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

fn notice(msg: &str) -> PgWireBackendMessage {
    let code = if msg.contains("already") { "25001" } else { "25P01" };
    PgWireBackendMessage::NoticeResponse(NoticeResponse::from(ErrorInfo::new(
        "WARNING".into(),
        code.into(),
        msg.into(),
    )))
}

fn row_description(fields: &[FieldInfo]) -> PgWireBackendMessage {
    PgWireBackendMessage::RowDescription(RowDescription::new(fields.iter().map(Into::into).collect()))
}

fn query_response(enc: Encoded) -> QueryResponse {
    let mut q = QueryResponse::new(enc.fields, stream::iter(enc.rows.into_iter().map(Ok)));
    q.set_command_tag(&enc.tag);
    q
}

impl QueryHandlers {
    async fn run_simple(&self, user: String, sql: String) -> Vec<(Reply, Option<Encoded>)> {
        let stmts: Vec<Result<Prepared, SqlError>> = match split(&sql) {
            Ok(parts) => parts.iter().map(|s| Prepared::new(s, &[])).collect(),
            Err(e) => vec![Err(e)],
        };
        if let [Ok(p)] = stmts.as_slice() {
            if let Some(r) = self.session.try_inline(&user, p, &Format::UnifiedText).await {
                return vec![r];
            }
        }
        let r = self
            .session
            .run(user, move |eng| Ok(eng.run_batch(stmts, &Format::UnifiedText)))
            .await;
        r.unwrap_or_else(|e| {
            vec![(
                Reply {
                    outcome: Err(e),
                    notices: Vec::new(),
                    params: Vec::new(),
                },
                None,
            )]
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandlers {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        if is_empty_query(&query.query) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                .await?;
        } else {
            let user = user_of(client);
            let cancel = cancel_receiver(client).await;
            let run = self.run_simple(user, query.query);
            let replies = match cancel {
                Some(rx) => match select(Box::pin(run), rx).await {
                    Either::Left((r, _)) => r,
                    Either::Right(_) => {
                        client.set_state(PgWireConnectionState::ReadyForQuery);
                        return Err(PgWireError::QueryCanceled);
                    }
                },
                None => run.await,
            };
            for (reply, enc) in replies {
                for n in &reply.notices {
                    client.feed(notice(n)).await?;
                }
                for (name, value) in reply.params {
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name, value)))
                        .await?;
                }
                match reply.outcome {
                    Err(e) => {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(e.to_info().into()))
                            .await?;
                        break;
                    }
                    Ok(Outcome::Empty) => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                            .await?
                    }
                    Ok(Outcome::Rows { .. }) => {
                        if let Some(enc) = enc {
                            client.feed(row_description(&enc.fields)).await?;
                            let n = enc.rows.len();
                            for row in enc.rows {
                                client.feed(PgWireBackendMessage::DataRow(row)).await?;
                            }
                            let tag = if enc.tag == "SHOW" {
                                "SHOW".to_string()
                            } else {
                                format!("{} {n}", enc.tag)
                            };
                            client
                                .feed(PgWireBackendMessage::CommandComplete(
                                    pgwire::messages::response::CommandComplete::new(tag),
                                ))
                                .await?;
                        }
                    }
                    Ok(Outcome::Done(tag) | Outcome::TxStart(tag) | Outcome::TxEnd(tag)) => {
                        client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
                    }
                }
            }
        }
        let st = status(self.session.tx());
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(st);
        send_ready_for_query(client, st).await?;
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let replies = self.run_simple(user_of(client), query.to_string()).await;
        let mut out = Vec::new();
        for (reply, enc) in replies {
            let stop = reply.outcome.is_err();
            out.push(to_response(reply, enc));
            if stop {
                break;
            }
        }
        Ok(out)
    }
}

fn to_response(reply: Reply, enc: Option<Encoded>) -> Response {
    match reply.outcome {
        Err(e) => Response::Error(Box::new(e.to_info())),
        Ok(Outcome::Empty) => Response::EmptyQuery,
        Ok(Outcome::Rows { .. }) => match enc {
            Some(enc) => Response::Query(query_response(enc)),
            None => Response::EmptyQuery,
        },
        Ok(Outcome::Done(tag)) => Response::Execution(tag),
        Ok(Outcome::TxStart(tag)) => Response::TransactionStart(tag),
        Ok(Outcome::TxEnd(tag)) => Response::TransactionEnd(tag),
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandlers {
    type Statement = Arc<Prepared>;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let r = self._on_execute(client, message).await;
        client.set_transaction_status(status(self.session.tx()));
        r
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Like PostgreSQL: a statement's Describe always answers
        // ParameterDescription, then RowDescription or NoData.
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                let (params, fields) = match client.portal_store().get_statement(name) {
                    Some(Entry::Value(stmt)) => {
                        let r = self.do_describe_statement(client, &stmt).await?;
                        (r.parameters, r.fields)
                    }
                    Some(Entry::Empty) => (Vec::new(), Vec::new()),
                    None => return Err(PgWireError::StatementNotFound(name.to_owned())),
                };
                client
                    .feed(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(
                        params.iter().map(|t| t.oid()).collect(),
                    )))
                    .await?;
                if fields.is_empty() {
                    client.send(PgWireBackendMessage::NoData(NoData::new())).await?;
                } else {
                    client.send(row_description(&fields)).await?;
                }
            }
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let r = self.do_describe_portal(client, &portal).await?;
                    send_describe_response(client, &r).await?;
                }
                Some(Entry::Empty) => client.send(PgWireBackendMessage::NoData(NoData::new())).await?,
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            t => return Err(PgWireError::InvalidTargetType(t)),
        }
        Ok(())
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // An error outside the engine (Parse, Bind, Describe) inside a
        // transaction fails it, as in PostgreSQL.
        if client.transaction_status() == TransactionStatus::Error {
            self.session.fail_open_transaction();
        }
        client.portal_store().rm_portal(DEFAULT_NAME);
        let st = status(self.session.tx());
        client.set_transaction_status(st);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(st)))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Arc<Prepared>>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = target.statement.clone();
        let (params, cols) = self
            .session
            .run(user_of(client), move |eng| eng.describe_statement(&p))
            .await
            .map_err(SqlError::into_pgwire)?;
        let f = cols.map(|c| fields(&c, &Format::UnifiedText)).unwrap_or_default();
        Ok(DescribeStatementResponse::new(params, f))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = portal.statement.statement.clone();
        let raw = portal.parameters.clone();
        let pf = portal.parameter_format.clone();
        let rf = portal.result_column_format.clone();
        let key = portal.state();
        let cols = self
            .session
            .run(user_of(client), move |eng| eng.describe_portal(&p, raw, pf, key))
            .await
            .map_err(SqlError::into_pgwire)?;
        Ok(DescribePortalResponse::new(
            cols.map(|c| fields(&c, &rf)).unwrap_or_default(),
        ))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = portal.statement.statement.clone();
        let raw = portal.parameters.clone();
        let pf = portal.parameter_format.clone();
        let rf = portal.result_column_format.clone();
        let key = portal.state();
        let (reply, enc) = match self.session.take_ran(&key) {
            Some(ran) => encode_reply(ran, &rf),
            None => self
                .session
                .run(user_of(client), move |eng| {
                    Ok(encode_reply(eng.execute_portal(&p, raw, pf, key), &rf))
                })
                .await
                .map_err(SqlError::into_pgwire)?,
        };
        for (name, value) in &reply.params {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.clone(),
                    value.clone(),
                )))
                .await?;
        }
        match to_response(reply, enc) {
            Response::Error(e) => Err(PgWireError::UserError(e)),
            r => Ok(r),
        }
    }
}
