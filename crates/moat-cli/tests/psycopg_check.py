"""psycopg 3 against a moat node: extended protocol with typed parameters,
binary results, transactions and errors. Run by tests/node_sql.rs."""
import os
import sys

import psycopg

dsn = os.environ["MOAT_DSN"]
with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, ok BOOLEAN, data BLOB)")
    # Parameters of several types (psycopg sends INT2 for small ints).
    cur.execute(
        "INSERT INTO items VALUES (%s, %s, %s, %s, %s)", (1, "apple", 1.5, True, b"\x00\x01\xff")
    )
    cur.executemany("INSERT INTO items (id, name, price, ok) VALUES (%s, %s, %s, %s)",
                    [(i, f"item {i}", i * 0.25, i % 2 == 0) for i in range(2, 20)])
    cur.execute("SELECT id, name, price, ok, data FROM items WHERE id = %s", (1,))
    row = cur.fetchone()
    assert row == (1, "apple", 1.5, True, b"\x00\x01\xff"), row
    cur.execute("SELECT count(*) FROM items WHERE price > %s", (2.0,))
    assert cur.fetchone()[0] == 11, "count"
    # Binary results.
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT id, name, price FROM items WHERE id = %s", (3,))
    assert bcur.fetchone() == (3, "item 3", 0.75)
    # NULL parameters.
    cur.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (100, None))
    cur.execute("SELECT name IS NULL FROM items WHERE id = 100")
    assert cur.fetchone()[0] in (True, 1)
    # An error with its SQLSTATE.
    try:
        cur.execute("INSERT INTO items (id) VALUES (%s)", (1,))
        sys.exit("duplicate key was accepted")
    except psycopg.errors.UniqueViolation:
        pass

# Transactions: rollback discards, commit keeps.
with psycopg.connect(dsn) as conn:
    with conn.transaction():
        conn.execute("INSERT INTO items (id, name) VALUES (200, 'kept')")
    try:
        with conn.transaction():
            conn.execute("INSERT INTO items (id, name) VALUES (201, 'discarded')")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    ids = [r[0] for r in conn.execute("SELECT id FROM items WHERE id >= 200 ORDER BY id")]
    assert ids == [200], ids
    assert conn.execute("SELECT current_user").fetchone()[0] == "root"
    # Describe runs a read at once and Execute takes its result (up to 256
    # rows on the async thread, more on a blocking one): both sizes, in text
    # and binary, with parameters, and read-your-writes in a transaction.
    series = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) SELECT i, 'row ' || i FROM s"
    for n in (3, 256, 257, 5000):
        for c in (conn.cursor(), conn.cursor(binary=True)):
            c.execute(series, (n,))
            got = c.fetchall()
            assert got == [(i, f"row {i}") for i in range(1, n + 1)], (n, got[:3], len(got))
    with conn.transaction():
        conn.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (300, "mine"))
        assert conn.execute("SELECT name FROM items WHERE id = %s", (300,)).fetchone()[0] == "mine"
print("psycopg checks passed")
