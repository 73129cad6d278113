//! SQL sessions share a pool of SQLite connections: a session borrows one
//! for a statement (or a whole transaction) and gives it back when idle.
//! What one session does must never show in another: its user, its
//! variables, its temporary tables, a read-only transaction's setting.
//! Driven by tokio-postgres over a plaintext pgwire server with trust
//! authentication (no cluster: the engine alone).

mod support;

use std::time::Duration;

use support::{bounded, code, connect, server};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The first column of the first row of a simple query.
async fn one(c: &Client, sql: &str) -> Option<String> {
    c.simple_query(sql).await.unwrap().into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    })?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_sees_its_own_user_and_variables() {
    bounded(async {
        let s = server().await;
        let alice = connect(&s, "alice").await;
        let root = connect(&s, "root").await;
        alice.batch_execute("SET application_name = 'alice-app'").await.unwrap();
        // Alternating sessions borrow the same idle connection in turn.
        for _ in 0..5 {
            assert_eq!(one(&alice, "SELECT current_user").await.as_deref(), Some("alice"));
            assert_eq!(one(&root, "SELECT current_user").await.as_deref(), Some("root"));
            assert_eq!(
                one(&alice, "SELECT current_setting('application_name')")
                    .await
                    .as_deref(),
                Some("alice-app")
            );
            assert_eq!(
                one(&root, "SELECT current_setting('application_name')")
                    .await
                    .as_deref(),
                Some("")
            );
        }
        // set_config() inside a statement changes only that session.
        one(&root, "SELECT set_config('application_name', 'root-app', false)").await;
        assert_eq!(
            one(&alice, "SELECT current_setting('application_name')")
                .await
                .as_deref(),
            Some("alice-app")
        );
        assert_eq!(
            one(&root, "SELECT current_setting('application_name')")
                .await
                .as_deref(),
            Some("root-app")
        );
        // The extended protocol too.
        let row = alice.query_one("SELECT current_user", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "alice");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_stay_with_their_session() {
    bounded(async {
        let s = server().await;
        let a = connect(&s, "root").await;
        let b = connect(&s, "root").await;
        a.batch_execute("CREATE TEMP TABLE scratch (x INT)").await.unwrap();
        a.batch_execute("INSERT INTO scratch VALUES (7)").await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                code(&b.simple_query("SELECT x FROM scratch").await.unwrap_err()),
                "42P01"
            );
            assert_eq!(one(&a, "SELECT x FROM scratch").await.as_deref(), Some("7"));
        }
        // Once the session ends, its temporary table is gone with it.
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = connect(&s, "root").await;
        assert_eq!(
            code(&c.simple_query("SELECT x FROM scratch").await.unwrap_err()),
            "42P01"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_does_not_outlive_itself() {
    bounded(async {
        let s = server().await;
        let a = connect(&s, "root").await;
        let b = connect(&s, "root").await;
        a.batch_execute("CREATE TABLE w (x INT)").await.unwrap();
        a.batch_execute("BEGIN READ ONLY").await.unwrap();
        assert_eq!(
            code(&a.simple_query("INSERT INTO w VALUES (1)").await.unwrap_err()),
            "25006"
        );
        a.batch_execute("ROLLBACK").await.unwrap();
        a.batch_execute("BEGIN; SET TRANSACTION READ ONLY; SELECT 1; COMMIT")
            .await
            .unwrap();
        // Neither session inherits the read-only setting.
        a.batch_execute("INSERT INTO w VALUES (1)").await.unwrap();
        b.batch_execute("INSERT INTO w VALUES (2)").await.unwrap();
        assert_eq!(one(&b, "SELECT count(*) FROM w").await.as_deref(), Some("2"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_keeps_its_connection() {
    bounded(async {
        let s = server().await;
        let a = connect(&s, "root").await;
        let b = connect(&s, "root").await;
        a.batch_execute("CREATE TABLE t (x INT)").await.unwrap();
        a.batch_execute("BEGIN").await.unwrap();
        a.batch_execute("INSERT INTO t VALUES (1)").await.unwrap();
        // Uncommitted: only the transaction sees it.
        assert_eq!(one(&a, "SELECT count(*) FROM t").await.as_deref(), Some("1"));
        assert_eq!(one(&b, "SELECT count(*) FROM t").await.as_deref(), Some("0"));
        a.batch_execute("COMMIT").await.unwrap();
        assert_eq!(one(&b, "SELECT count(*) FROM t").await.as_deref(), Some("1"));
        // A session that ends inside a transaction leaves nothing behind.
        a.batch_execute("BEGIN; INSERT INTO t VALUES (2)").await.unwrap();
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
        assert_eq!(one(&b, "SELECT count(*) FROM t").await.as_deref(), Some("2"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_select_runs_to_the_end() {
    bounded(async {
        let s = server().await;
        let c = connect(&s, "root").await;
        // Far longer than a statement may run on an async thread: it is
        // stopped there and run again on a blocking thread.
        let sql =
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT count(*) FROM n";
        assert_eq!(one(&c, sql).await.as_deref(), Some("300000"));
        assert_eq!(one(&c, "SELECT 1").await.as_deref(), Some("1"));
    })
    .await;
}
