#!/usr/bin/env python3
"""Memory per idle TLS connection: open N connections with certificate auth
(psycopg 3 / libpq, sslmode=verify-full), keep them idle, and measure the
server's memory before and after. Used by bench/sql.sh; prints one JSON line.

    python3 bench/idle_conns.py --kind moat|postgres --pid SERVER_PID \
        --port PORT --certs DIR [-n 5000] [--query] [--deadline 300]

--kind moat: the server is one process; memory is its VmRSS (and Pss from
/proc/PID/smaps_rollup, for comparison).
--kind postgres: the server is the postmaster and one forked backend per
connection; memory is the sum over the postmaster and all its descendants,
of Pss (shared pages divided between the processes that map them: the fair
figure) and of Rss (counts shared pages once per process: an overcount).

--query runs one `SELECT 1` on each connection before it goes idle (a pooled
connection has usually run something); without it the connections are idle
right after authentication.
"""

import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time

import psycopg


def read_kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def memory(kind, pid):
    procs = tree(pid) if kind == "postgres" else [pid]
    pss = sum(read_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in procs)
    rss = sum(read_kib(f"/proc/{p}/status", "VmRSS") for p in procs)
    return {"procs": len(procs), "pss_kib": pss, "rss_kib": rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["moat", "postgres"], required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--certs", required=True, help="dir with ca.crt, client.root.crt, client.root.key")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--query", action="store_true")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before measuring")
    ap.add_argument("--deadline", type=float, default=300.0, help="stop opening after this many seconds")
    a = ap.parse_args()

    conninfo = dict(
        host="localhost",
        hostaddr="127.0.0.1",
        port=a.port,
        user="root",
        dbname="defaultdb",
        sslmode="verify-full",
        sslrootcert=os.path.join(a.certs, "ca.crt"),
        sslcert=os.path.join(a.certs, "client.root.crt"),
        sslkey=os.path.join(a.certs, "client.root.key"),
        connect_timeout=20,
        gssencmode="disable",
    )
    start = time.monotonic()
    stop = threading.Event()
    conns, errors = [], []
    lock = threading.Lock()

    def opener(count):
        for _ in range(count):
            if stop.is_set() or time.monotonic() - start > a.deadline:
                return
            try:
                c = psycopg.connect(autocommit=True, **conninfo)
                if a.query:
                    c.execute("SELECT 1").fetchall()
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                with lock:
                    errors.append(str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
                    if len(errors) > 20:
                        stop.set()
                continue
            with lock:
                conns.append(c)

    time.sleep(a.settle / 3)
    before = memory(a.kind, a.pid)
    per = [a.n // a.threads + (1 if i < a.n % a.threads else 0) for i in range(a.threads)]
    with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
        list(ex.map(opener, per))
    open_secs = time.monotonic() - start
    time.sleep(a.settle)
    after = memory(a.kind, a.pid)
    n = len(conns)
    for c in conns:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass
    time.sleep(a.settle)
    closed = memory(a.kind, a.pid)
    res = {
        "kind": a.kind,
        "requested": a.n,
        "open": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "query": a.query,
        "open_secs": round(open_secs, 1),
        "before": before,
        "after": after,
        "after_close": closed,
    }
    if n:
        res["pss_kib_per_conn"] = round((after["pss_kib"] - before["pss_kib"]) / n, 1)
        res["rss_kib_per_conn"] = round((after["rss_kib"] - before["rss_kib"]) / n, 1)
    print(json.dumps(res))
    return 0 if n == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
