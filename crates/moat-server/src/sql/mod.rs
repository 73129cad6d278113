//! # The SQL engine: PostgreSQL's protocol over SQLite
//!
//! Everything after authentication. One [`QueryHandlers`] per client
//! connection; it borrows a SQLite connection from the node's pool for a
//! statement, or for a transaction (transactions span statements), and
//! gives it back when idle. SQLite calls run on a blocking thread (a lone
//! read-only `SELECT` runs on the async thread, stopped after 500 µs and
//! then run on a blocking thread); a statement whose client goes away or
//! cancels is interrupted. All statements run through one function,
//! `session::Engine::execute`, the place to route them elsewhere later
//! (replication). Non-deterministic SQL (`random()`, `now()`,
//! `gen_random_uuid()`) is run as is for now.
//!
//! ## Protocol
//!
//! - Simple query: several statements per query, run in order, stopping at
//!   the first error. Outside a transaction, a multi-statement query runs in
//!   one implicit transaction (all or nothing), as in PostgreSQL, unless it
//!   contains transaction control itself.
//! - Extended query: Parse/Bind/Describe/Execute/Sync/Close, named and
//!   unnamed statements and portals, `max_rows` (portal suspension), text
//!   and binary formats for parameters and results. Parameters are decoded
//!   by the type the client declared in Parse, else the type moat inferred
//!   and reported in ParameterDescription, else TEXT. A statement's Describe
//!   always answers ParameterDescription then RowDescription/NoData.
//! - ReadyForQuery carries the session's real state: idle, in transaction,
//!   failed transaction. In a failed transaction everything but `ROLLBACK`,
//!   `ROLLBACK TO SAVEPOINT` and `COMMIT` (which rolls back, tag `ROLLBACK`)
//!   is refused with 25P02. An error in Parse/Bind/Describe also fails an
//!   open transaction.
//! - Only built-in type OIDs are ever sent, so drivers (tokio-postgres,
//!   psycopg) never query `pg_catalog` to learn a type.
//!
//! ## Types (RowDescription)
//!
//! Declared column types map as CockroachDB users expect: `INT`, `INTEGER`,
//! `BIGINT`, `INT8`, `SERIAL` → INT8 (CockroachDB's `INT` is 64-bit);
//! `SMALLINT`/`INT2` → INT2; `INT4` → INT4; `REAL`, `FLOAT`, `FLOAT8`,
//! `DOUBLE [PRECISION]` → FLOAT8 (SQLite stores doubles); `FLOAT4` → FLOAT4;
//! `BOOL`/`BOOLEAN` → BOOL (stored 0/1); `TEXT`, `STRING`, `CHAR(n)` → TEXT;
//! `VARCHAR(n)` → VARCHAR; `BLOB`, `BYTEA`, `BYTES` → BYTEA; `NUMERIC`,
//! `DECIMAL` → NUMERIC (SQLite keeps a double, so precision is a double's);
//! `DATE`, `TIME`, `TIMESTAMP`, `TIMESTAMPTZ` → those types (stored as
//! ISO-8601 text; Unix seconds are understood too; shown in UTC whatever
//! `TimeZone` says); `JSON`/`JSONB`, `UUID` → those types (stored as text).
//! Other names follow SQLite's affinity rules (`…INT…` → INT8, `…CHAR…` →
//! TEXT, ...). Expressions have no declared type: moat infers common ones
//! (`count(*)` → INT8, `avg()` → FLOAT8, comparisons → BOOL, `||` → TEXT,
//! `CAST(x AS t)` and `x::t` → t, `now()` → TIMESTAMPTZ, arithmetic, CASE,
//! ...) and otherwise takes the first row's value type (INTEGER → INT8, REAL
//! → FLOAT8, TEXT → TEXT, BLOB → BYTEA, NULL → TEXT). A value that does not
//! fit its column's type (SQLite stores anything anywhere) is an error
//! 22P02 naming the column. A Describe'd statement keeps the described types
//! for its executions.
//!
//! Parameter types are inferred from the column a `$n` is compared with,
//! assigned or inserted into, from `$n::type` / `CAST($n AS type)`, from
//! `LIMIT`/`OFFSET` (INT8) and arithmetic with a number; else TEXT.
//!
//! ## PostgreSQL and CockroachDB spellings accepted
//!
//! `$1` parameters; `x::type` casts; `E'...'` and `$$...$$` strings;
//! `ILIKE` (as SQLite's case-insensitive `LIKE`); `current_user`,
//! `session_user`, `current_role`, `current_catalog`, `current_schema`;
//! functions `version()` ("moat 0.1.0 (SQL over SQLite …; CockroachDB-compatible
//! TLS and authentication)"), `current_database()` (`defaultdb`),
//! `current_schema()` (`public`), `pg_backend_pid()`, `now()`,
//! `gen_random_uuid()`, `unique_rowid()`, `current_setting()`,
//! `set_config()`; `pg_catalog.`-qualified function names; a trailing
//! `FOR UPDATE`/`FOR SHARE` (dropped: SQLite serialises writers);
//! `SERIAL`/`BIGSERIAL` (→ `INTEGER`, so `id SERIAL PRIMARY KEY` numbers
//! rows), `STRING`, `BYTES` column types; `UPSERT INTO` (as `INSERT OR
//! REPLACE`); `TRUNCATE [TABLE] t`; `EXPLAIN` (SQLite's query plan);
//! `SHOW TABLES`, `SHOW COLUMNS FROM t`, `SHOW CREATE TABLE t`,
//! `SHOW DATABASES`; `USE defaultdb`; `DEFAULT f()` in DDL (parenthesised
//! for SQLite, so `DEFAULT gen_random_uuid()`, `DEFAULT now()`,
//! `DEFAULT unique_rowid()` work). Result columns without an alias get
//! PostgreSQL's names (`count`, `?column?`, the cast type's name). Everything
//! else is SQLite's SQL, with SQLite's semantics (e.g. `1/0` is NULL, not
//! an error; `now()` is the statement's time, not the transaction's).
//! Results are materialised in memory before they are sent.
//!
//! ## Transactions
//!
//! `BEGIN`/`START TRANSACTION` (isolation levels accepted: SQLite is always
//! serializable; `READ ONLY` is enforced), `COMMIT`/`END`,
//! `ROLLBACK`/`ABORT`, `SAVEPOINT`, `RELEASE [SAVEPOINT]`,
//! `ROLLBACK TO [SAVEPOINT]`, `SET TRANSACTION ...`. Transactions are
//! SQLite's deferred transactions; a write conflict or a lock held too long
//! inside a transaction is 40001 ("restart transaction", retry as with
//! CockroachDB), outside one 55P03.
//!
//! ## Session variables
//!
//! `SET [SESSION|LOCAL] name {=|TO} value|DEFAULT`, `SET TIME ZONE`,
//! `SET NAMES`, `SET SCHEMA`, `RESET name|ALL`, `DISCARD ALL`, `SHOW name`,
//! `SHOW ALL`, `SHOW TIME ZONE`, `SHOW TRANSACTION ISOLATION LEVEL`.
//! Known variables (`application_name`, `client_encoding` (UTF8 only),
//! `DateStyle` (ISO only), `TimeZone`, `extra_float_digits`, `search_path`,
//! `standard_conforming_strings` (on only), `statement_timeout`,
//! `server_version` ([`SERVER_VERSION`]), `transaction_isolation`
//! (`serializable`), `is_superuser`, `session_user`, ...) are kept per
//! session; reported ones are sent back in ParameterStatus. Any other name
//! can be set and shown (like PostgreSQL's custom `a.b` variables); showing
//! one never set is 42704. `SET ROLE` and `SET SESSION AUTHORIZATION` are
//! refused (42501): a session keeps its authenticated user.
//!
//! ## Users and system tables
//!
//! `CREATE USER|ROLE`, `ALTER USER|ROLE ... PASSWORD`, `DROP USER|ROLE`,
//! `SHOW USERS|ROLES` (columns `username`, `options`) are run by
//! [`crate::users`] as the session's user (only `root` may manage users,
//! 42501 otherwise), inside the session's transaction. Their text is never
//! logged. SQLite's authorizer denies user SQL any read, write, schema
//! change, index or trigger on tables named `moat_*` (42501), `ATTACH`,
//! and the pragmas `writable_schema`, `journal_mode`, `synchronous`;
//! PRAGMA assignments are refused.
//!
//! ## Refused (0A000 unless said)
//!
//! `pg_catalog` / `information_schema` queries (psql's `\d`), `COPY`,
//! `LISTEN`/`NOTIFY`, cursors (`DECLARE`/`FETCH`), SQL-level
//! `PREPARE`/`EXECUTE`, `GRANT`/`REVOKE`, `CREATE DATABASE|SCHEMA|SEQUENCE|
//! TYPE|FUNCTION|EXTENSION`, `LOCK`, two-phase commit, `EXPLAIN ANALYZE`,
//! array and interval casts, `VACUUM INTO`, `ATTACH`/`DETACH`.
//!
//! ## Errors
//!
//! SQLite errors carry PostgreSQL SQLSTATEs: syntax 42601, no such table
//! 42P01, no such column 42703, no such function 42883, already exists
//! 42P07, UNIQUE/PRIMARY KEY 23505, NOT NULL 23502, FOREIGN KEY 23503,
//! CHECK 23514, busy/locked 40001 or 55P03, read-only 25006, interrupted
//! 57014, authorizer 42501, anything else XX000.

pub(crate) mod error;
mod handlers;
mod infer;
pub(crate) mod intercept;
mod lexer;
mod rewrite;
pub(crate) mod session;
pub(crate) mod types;

pub use error::SqlError;
pub use handlers::{Parser, QueryHandlers};
pub use intercept::{version_string, DATABASE, SERVER_VERSION, SERVER_VERSION_NUM};
pub use session::Prepared;
