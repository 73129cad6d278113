//! The SQL engine driven by real clients (tokio-postgres, psql) over a
//! plaintext pgwire server with trust authentication.

mod support;

use std::time::Duration;

use moat_server::sql::SERVER_VERSION;
use support::{bounded, code, connect, server};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Values of the rows of a simple query, as text.
async fn simple(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn extended_protocol_parameters_and_types() {
    bounded(async {
        let s = server().await;
        let mut c = connect(&s, "root").await;
        c.batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, small SMALLINT, i4 INT4, f DOUBLE PRECISION, name TEXT, ok BOOL, data BYTEA, note VARCHAR(20))",
        )
        .await
        .unwrap();
        let n = c
            .execute(
                "INSERT INTO t (id, small, i4, f, name, ok, data, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&1i64, &7i16, &40000i32, &2.5f64, &"héllo".to_string(), &true, &vec![0u8, 1, 255], &None::<String>],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        // The same statement prepared once, run twice.
        let ins = c.prepare("INSERT INTO t (id, name, ok) VALUES ($1, $2, $3)").await.unwrap();
        assert_eq!(ins.params().len(), 3);
        c.execute(&ins, &[&2i64, &"two", &false]).await.unwrap();
        c.execute(&ins, &[&3i64, &"three", &None::<bool>]).await.unwrap();

        let row = c.query_one("SELECT id, small, i4, f, name, ok, data, note FROM t WHERE id = $1", &[&1i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        assert_eq!(row.get::<_, i16>(1), 7);
        assert_eq!(row.get::<_, i32>(2), 40000);
        assert_eq!(row.get::<_, f64>(3), 2.5);
        assert_eq!(row.get::<_, String>(4), "héllo");
        assert!(row.get::<_, bool>(5));
        assert_eq!(row.get::<_, Vec<u8>>(6), vec![0u8, 1, 255]);
        assert_eq!(row.get::<_, Option<String>>(7), None);

        let rows = c.query("SELECT name FROM t WHERE id > $1 AND ok IS NOT NULL ORDER BY id", &[&1i64]).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), vec!["two"]);
        let rows = c.query("SELECT id FROM t WHERE name IN ($1, $2) ORDER BY id LIMIT $3", &[&"two", &"three", &10i64]).await.unwrap();
        assert_eq!(rows.len(), 2);

        // Expressions: inferred types.
        let row = c
            .query_one(
                "SELECT count(*), 1 + 2, 1.5 * 2, 'a' || 'b', 1 = 1, $1::int8 + 1, $2::text, avg(f), version(), current_user, current_database() FROM t WHERE id = 1",
                &[&41i64, &"x"],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        assert_eq!(row.get::<_, i64>(1), 3);
        assert_eq!(row.get::<_, f64>(2), 3.0);
        assert_eq!(row.get::<_, String>(3), "ab");
        assert!(row.get::<_, bool>(4));
        assert_eq!(row.get::<_, i64>(5), 42);
        assert_eq!(row.get::<_, String>(6), "x");
        assert_eq!(row.get::<_, f64>(7), 2.5);
        assert!(row.get::<_, String>(8).starts_with("moat "), "{}", row.get::<_, String>(8));
        assert!(row.get::<_, String>(8).contains("CockroachDB"));
        assert_eq!(row.get::<_, String>(9), "root");
        assert_eq!(row.get::<_, String>(10), "defaultdb");
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        assert_eq!(&names[..3], ["count", "?column?", "?column?"]);
        assert_eq!(&names[8..], ["version", "current_user", "current_database"]);

        // psycopg-style: explicit INT2 parameter for a bigint column.
        let stmt = c.prepare_typed("SELECT name FROM t WHERE id = $1", &[tokio_postgres::types::Type::INT2]).await.unwrap();
        let row = c.query_one(&stmt, &[&2i16]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "two");

        // NULL parameters and UPDATE/DELETE counts.
        assert_eq!(c.execute("UPDATE t SET note = $1 WHERE id >= $2", &[&None::<String>, &2i64]).await.unwrap(), 2);
        assert_eq!(c.execute("DELETE FROM t WHERE id = $1", &[&3i64]).await.unwrap(), 1);
        // RETURNING
        let row = c.query_one("INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id, name", &[&9i64, &"nine"]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (9, "nine".to_string()));
        // SERIAL numbers rows.
        c.batch_execute("CREATE TABLE s (id SERIAL PRIMARY KEY, v STRING)").await.unwrap();
        let row = c.query_one("INSERT INTO s (v) VALUES ($1) RETURNING id", &[&"a"]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
        // Rows fetched in pieces (portal suspension) through a transaction.
        let tx = c.transaction().await.unwrap();
        let portal = tx.bind("SELECT id FROM t ORDER BY id", &[]).await.unwrap();
        assert_eq!(tx.query_portal(&portal, 2).await.unwrap().len(), 2);
        assert_eq!(tx.query_portal(&portal, 2).await.unwrap().len(), 1);
        tx.commit().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn text_results_of_simple_queries() {
    bounded(async {
        let s = server().await;
        let c = connect(&s, "root").await;
        let rows = simple(
            &c,
            "SELECT 1.5::float8, true, x'0102', 1e20, '2024-01-02T03:04:05Z'::timestamp, CAST('2024-01-02' AS date), NULL, 7",
        )
        .await;
        assert_eq!(
            rows,
            vec![vec![
                Some("1.5".into()),
                Some("t".into()),
                Some("\\x0102".into()),
                Some("1e+20".into()),
                Some("2024-01-02 03:04:05".into()),
                Some("2024-01-02".into()),
                None,
                Some("7".into())
            ]]
        );
        // CockroachDB-style defaults and casts.
        c.batch_execute(
            "CREATE TABLE ev (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), n INT DEFAULT unique_rowid(), \
             at TIMESTAMPTZ DEFAULT now(), v STRING); INSERT INTO ev (v) VALUES ('a'), ('b')",
        )
        .await
        .unwrap();
        let rows = simple(&c, "SELECT length(id::text), n > 0, at IS NOT NULL, now()::date = current_date FROM ev").await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], vec![Some("36".into()), Some("t".into()), Some("t".into()), Some("t".into())]);
    })
    .await;
}

#[tokio::test]
async fn transactions() {
    bounded(async {
        let s = server().await;
        let mut c = connect(&s, "root").await;
        c.batch_execute("CREATE TABLE a (id INT PRIMARY KEY)").await.unwrap();
        // Commit.
        let tx = c.transaction().await.unwrap();
        tx.execute("INSERT INTO a VALUES ($1)", &[&1i64]).await.unwrap();
        tx.commit().await.unwrap();
        // Rollback.
        let tx = c.transaction().await.unwrap();
        tx.execute("INSERT INTO a VALUES ($1)", &[&2i64]).await.unwrap();
        tx.rollback().await.unwrap();
        let n: i64 = c.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
        // Another session does not see uncommitted rows.
        let other = connect(&s, "root").await;
        c.batch_execute("BEGIN; INSERT INTO a VALUES (3)").await.unwrap();
        let n: i64 = other.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
        c.batch_execute("COMMIT").await.unwrap();
        let n: i64 = other.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
        assert_eq!(n, 2);
        // A failed transaction refuses everything until ROLLBACK.
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("INSERT INTO a VALUES (4)", &[]).await.unwrap();
        let e = c.execute("INSERT INTO a VALUES (1)", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION));
        let e = c.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
        let e = c.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
        // COMMIT of a failed transaction rolls it back.
        let msgs = c.simple_query("COMMIT").await.unwrap();
        assert!(matches!(msgs.last(), Some(SimpleQueryMessage::CommandComplete(_))));
        let n: i64 = c.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
        assert_eq!(n, 2, "the failed transaction's insert of 4 is gone");
        // Savepoints: an error rolled back to a savepoint keeps the transaction.
        let mut tx = c.transaction().await.unwrap();
        tx.execute("INSERT INTO a VALUES (5)", &[]).await.unwrap();
        {
            let sp = tx.savepoint("sp").await.unwrap();
            assert!(sp.execute("INSERT INTO a VALUES (1)", &[]).await.is_err());
            sp.rollback().await.unwrap();
        }
        tx.execute("INSERT INTO a VALUES (6)", &[]).await.unwrap();
        tx.commit().await.unwrap();
        let n: i64 = c.query_one("SELECT count(*) FROM a", &[]).await.unwrap().get(0);
        assert_eq!(n, 4);
        // SAVEPOINT outside a transaction.
        let e = c.batch_execute("SAVEPOINT x").await.unwrap_err();
        assert_eq!(code(&e), "25P01");
        // READ ONLY is enforced.
        c.batch_execute("BEGIN READ ONLY").await.unwrap();
        let e = c.batch_execute("INSERT INTO a VALUES (7)").await.unwrap_err();
        assert_eq!(code(&e), "25006");
        c.batch_execute("ROLLBACK").await.unwrap();
        c.batch_execute("INSERT INTO a VALUES (7)").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn errors_have_sqlstates() {
    bounded(async {
        let s = server().await;
        let c = connect(&s, "root").await;
        c.batch_execute("CREATE TABLE u (id INT PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INT CHECK (n > 0), p INT REFERENCES u (id))")
            .await
            .unwrap();
        c.batch_execute("INSERT INTO u VALUES (1, 'a', 1, NULL)").await.unwrap();
        let cases: [(&str, &str); 9] = [
            ("SELEC 1", "42601"),
            ("SELECT * FROM missing", "42P01"),
            ("SELECT nope FROM u", "42703"),
            ("INSERT INTO u VALUES (2, 'a', 1, NULL)", "23505"),
            ("INSERT INTO u VALUES (1, 'b', 1, NULL)", "23505"),
            ("INSERT INTO u VALUES (2, NULL, 1, NULL)", "23502"),
            ("INSERT INTO u VALUES (2, 'b', 0, NULL)", "23514"),
            ("INSERT INTO u VALUES (2, 'b', 1, 99)", "23503"),
            ("SELECT * FROM pg_catalog.pg_class", "0A000"),
        ];
        for (sql, want) in cases {
            let e = c.simple_query(sql).await.unwrap_err();
            assert_eq!(code(&e), want, "{sql}: {e}");
            let e = c.query(sql, &[]).await.unwrap_err();
            assert_eq!(code(&e), want, "{sql} (extended): {e}");
        }
        let e = c.simple_query("COPY u FROM STDIN").await.unwrap_err();
        assert_eq!(code(&e), "0A000");
        // The connection is still usable.
        assert_eq!(simple(&c, "SELECT 1").await, vec![vec![Some("1".into())]]);
    })
    .await;
}

#[tokio::test]
async fn set_show_and_friends() {
    bounded(async {
        let s = server().await;
        let c = connect(&s, "root").await;
        c.batch_execute(
            "SET application_name = 'moat-test'; SET TIME ZONE 'UTC'; SET extra_float_digits = 3; \
             SET search_path TO public; SET client_encoding TO 'UTF8'; SET SESSION statement_timeout = 0; \
             SET DateStyle = ISO; SET standard_conforming_strings = on; SET myapp.flag = 'on'",
        )
        .await
        .unwrap();
        assert_eq!(
            simple(&c, "SHOW application_name").await,
            vec![vec![Some("moat-test".into())]]
        );
        assert_eq!(
            simple(&c, "SHOW server_version").await,
            vec![vec![Some(SERVER_VERSION.into())]]
        );
        assert_eq!(
            simple(&c, "SHOW transaction_isolation").await,
            vec![vec![Some("serializable".into())]]
        );
        assert_eq!(simple(&c, "SHOW TIME ZONE").await, vec![vec![Some("UTC".into())]]);
        assert_eq!(simple(&c, "SHOW myapp.flag").await, vec![vec![Some("on".into())]]);
        let row = c.query_one("SHOW search_path", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "public");
        let row = c
            .query_one("SELECT current_setting('application_name'), current_schema()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "moat-test");
        assert_eq!(row.get::<_, String>(1), "public");
        c.batch_execute("RESET application_name").await.unwrap();
        assert_eq!(simple(&c, "SHOW application_name").await, vec![vec![Some("".into())]]);
        assert!(simple(&c, "SHOW ALL").await.len() > 10);
        assert_eq!(code(&c.simple_query("SHOW nope").await.unwrap_err()), "42704");
        assert_eq!(
            code(&c.simple_query("SET client_encoding = 'LATIN1'").await.unwrap_err()),
            "22023"
        );
        assert_eq!(code(&c.simple_query("SET ROLE alice").await.unwrap_err()), "42501");
        assert_eq!(
            code(&c.simple_query("SET server_version = '1'").await.unwrap_err()),
            "55P02"
        );
        let row = c.query_one("SELECT version()", &[]).await.unwrap();
        assert!(row.get::<_, String>(0).starts_with("moat "));
        assert_eq!(
            simple(&c, "SELECT current_user, session_user").await,
            vec![vec![Some("root".into()), Some("root".into())]]
        );
        c.batch_execute("CREATE TABLE shown (a INT)").await.unwrap();
        let tables = simple(&c, "SHOW TABLES").await;
        assert_eq!(
            tables,
            vec![vec![Some("public".into()), Some("shown".into()), Some("table".into())]]
        );
    })
    .await;
}

#[tokio::test]
async fn users_and_system_tables() {
    bounded(async {
        let s = server().await;
        let root = connect(&s, "root").await;
        root.batch_execute("CREATE USER alice WITH PASSWORD 'secret-1'")
            .await
            .unwrap();
        root.batch_execute("CREATE USER bob").await.unwrap();
        let rows = simple(&root, "SHOW USERS").await;
        assert_eq!(
            rows,
            vec![
                vec![Some("alice".into()), Some("PASSWORD".into())],
                vec![Some("bob".into()), Some("".into())],
                vec![Some("root".into()), Some("".into())]
            ]
        );
        let rows = root.query("SHOW USERS", &[]).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].columns()[0].name(), "username");
        assert_eq!(rows[0].columns()[1].name(), "options");

        let alice = connect(&s, "alice").await;
        assert_eq!(
            alice
                .query_one("SELECT current_user", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
            "alice"
        );
        assert_eq!(
            code(&alice.simple_query("CREATE USER carol").await.unwrap_err()),
            "42501"
        );
        assert_eq!(code(&alice.simple_query("DROP USER bob").await.unwrap_err()), "42501");
        assert_eq!(simple(&alice, "SHOW USERS").await.len(), 3);

        for c in [&root, &alice] {
            for sql in [
                "SELECT * FROM moat_users",
                "SELECT count(*) FROM moat_users",
                "SELECT scram FROM main.moat_users",
                "UPDATE moat_users SET scram = NULL",
                "DELETE FROM moat_users",
                "INSERT INTO moat_users (name) VALUES ('x')",
                "DROP TABLE moat_users",
                "ALTER TABLE moat_users RENAME TO t",
                "CREATE TABLE moat_mine (a INT)",
                "CREATE INDEX i ON moat_users (scram)",
                "CREATE TRIGGER tr AFTER INSERT ON moat_users BEGIN SELECT 1; END",
                "PRAGMA table_info(moat_users)",
                "ATTACH DATABASE 'x.db' AS x",
            ] {
                let e = c.simple_query(sql).await.unwrap_err();
                assert_eq!(
                    code(&e),
                    if sql.starts_with("ATTACH") { "0A000" } else { "42501" },
                    "{sql}: {e}"
                );
            }
            let e = c
                .query("SELECT name, scram FROM moat_users WHERE name = $1", &[&"root"])
                .await
                .unwrap_err();
            assert_eq!(code(&e), "42501");
        }
        // Through a view or a subquery too.
        root.batch_execute("CREATE VIEW v AS SELECT 1 AS x").await.unwrap();
        let e = root
            .simple_query("SELECT (SELECT count(*) FROM moat_users)")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "42501");
        root.batch_execute("CREATE VIEW leak AS SELECT * FROM moat_users")
            .await
            .ok();
        assert!(root.simple_query("SELECT * FROM leak").await.is_err());

        // User statements are transactional with the session.
        root.batch_execute("BEGIN; CREATE USER dave; ROLLBACK").await.unwrap();
        assert_eq!(simple(&root, "SHOW USERS").await.len(), 3);
        root.batch_execute("ALTER USER bob WITH PASSWORD 'pw-2'; DROP USER alice")
            .await
            .unwrap();
        assert_eq!(
            simple(&root, "SHOW USERS").await,
            vec![
                vec![Some("bob".into()), Some("PASSWORD".into())],
                vec![Some("root".into()), Some("".into())]
            ]
        );
        // The authorizer is back after a user statement.
        assert_eq!(
            code(&root.simple_query("SELECT * FROM moat_users").await.unwrap_err()),
            "42501"
        );
    })
    .await;
}

#[tokio::test]
async fn multi_statement_simple_queries() {
    bounded(async {
        let s = server().await;
        let c = connect(&s, "root").await;
        let msgs = c
            .simple_query("CREATE TABLE m (a INT); INSERT INTO m VALUES (1), (2); SELECT a FROM m ORDER BY a; UPDATE m SET a = a + 10")
            .await
            .unwrap();
        let tags: Vec<u64> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(tags, vec![0, 2, 2, 2]);
        let rows: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec!["1", "2"]);
        // All or nothing outside a transaction.
        assert!(c.simple_query("INSERT INTO m VALUES (3); SELECT * FROM nope; INSERT INTO m VALUES (4)").await.is_err());
        assert_eq!(simple(&c, "SELECT count(*) FROM m").await, vec![vec![Some("2".into())]]);
        // Explicit transaction control inside one query string.
        c.simple_query("BEGIN; INSERT INTO m VALUES (5); COMMIT").await.unwrap();
        assert_eq!(simple(&c, "SELECT count(*) FROM m").await, vec![vec![Some("3".into())]]);
        // Extended protocol refuses several statements.
        assert_eq!(code(&c.prepare("SELECT 1; SELECT 2").await.unwrap_err()), "42601");
    })
    .await;
}

#[tokio::test]
async fn psql_works() {
    if std::process::Command::new("psql").arg("--version").output().is_err() {
        eprintln!("psql not installed; skipped");
        return;
    }
    bounded(async {
        let s = server().await;
        let home = tempfile::tempdir().unwrap();
        let conninfo = format!(
            "host=127.0.0.1 port={} user=root dbname=defaultdb sslmode=disable",
            s.addr.port()
        );
        let out = tokio::process::Command::new("psql")
            .arg(&conninfo)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", "CREATE TABLE p (id INT PRIMARY KEY, name TEXT)"])
            .args(["-c", "INSERT INTO p VALUES (1, 'one'), (2, 'two')"])
            .args(["-c", "SELECT name FROM p ORDER BY id"])
            .args(["-c", "SELECT version()"])
            .args(["-c", "SHOW server_version"])
            .env("HOME", home.path())
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "psql failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(&lines[..2], ["one", "two"]);
        assert!(lines[2].starts_with("moat "), "{stdout}");
        assert_eq!(lines[3], SERVER_VERSION);
        // A catalog query is refused with a clear error.
        let out = tokio::process::Command::new("psql")
            .arg(&conninfo)
            .args(["-X", "-c", "\\d"])
            .env("HOME", home.path())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success() || !out.stderr.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not supported"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}

#[tokio::test]
async fn write_lock_contention() {
    bounded(async {
        let s = server().await;
        let a = connect(&s, "root").await;
        let b = connect(&s, "root").await;
        a.batch_execute("CREATE TABLE w (x INT)").await.unwrap();
        a.batch_execute("BEGIN; INSERT INTO w VALUES (1)").await.unwrap();
        // Readers are not blocked by the writer (WAL) and see the last commit.
        assert_eq!(simple(&b, "SELECT count(*) FROM w").await, vec![vec![Some("0".into())]]);
        // A second writer waits for the lock (5 s), then gives up with 55P03;
        // the server stays responsive meanwhile.
        let started = std::time::Instant::now();
        let (e, other) = tokio::join!(b.simple_query("INSERT INTO w VALUES (2)"), async {
            let c = connect(&s, "root").await;
            simple(&c, "SELECT 1").await
        });
        assert_eq!(other, vec![vec![Some("1".into())]]);
        assert_eq!(code(&e.unwrap_err()), "55P03");
        assert!(started.elapsed() >= Duration::from_secs(4));
        // Inside a transaction the same conflict is a retryable 40001.
        b.batch_execute("BEGIN").await.unwrap();
        assert_eq!(
            code(&b.simple_query("INSERT INTO w VALUES (3)").await.unwrap_err()),
            "40001"
        );
        b.batch_execute("ROLLBACK").await.unwrap();
        a.batch_execute("COMMIT").await.unwrap();
        assert_eq!(simple(&b, "SELECT count(*) FROM w").await, vec![vec![Some("1".into())]]);
    })
    .await;
}
