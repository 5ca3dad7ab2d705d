"""``sqlvec bench``: ingest and exact-search figures over psycopg against any PostgreSQL DSN.

The same run can measure sqlvec and PostgreSQL + pgvector (point ``--dsn`` at each), so figures
are compared within one run on one machine. Output: one JSON object per measurement on stdout,
and a markdown table at the end.

Phases (on N x dim random float32 vectors, seeded):
  copy         COPY ... FROM STDIN (text) rows/s
  insert_multi multi-row INSERT ... VALUES, ``--batch`` rows per statement, rows/s
  executemany  psycopg executemany of single-row INSERTs (pipelined), rows/s
  exact_topk   ORDER BY embedding <-> $1 LIMIT 10, p50/p99 latency in ms, and recall against numpy
  rss          the server's resident memory after loading (only when --server-pid is given, or for a
               server started by this command)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dsn", default=None, help="PostgreSQL connection string; default: start a sqlvec server "
                                                 "on a temporary data directory")
    p.add_argument("--rows", type=int, default=100_000, help="rows to load")
    p.add_argument("--dim", type=int, default=128, help="vector dimension")
    p.add_argument("--queries", type=int, default=200, help="exact top-10 queries to time")
    p.add_argument("--batch", type=int, default=1000, help="rows per multi-row INSERT")
    p.add_argument("--executemany-rows", type=int, default=20_000, help="rows for the executemany phase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-pid", type=int, default=None, help="pid of the server, to report its RSS")
    p.add_argument("--system", default="server", help="name of the --dsn server in the output")
    p.add_argument("--peer", choices=["pgserver"], default=None,
                   help="also run the workload on PostgreSQL + pgvector started from the pgserver package "
                        "(the pgref extra), fsync on, and print both side by side with ratios")


def _vec(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in v) + "]"


def _emit(record: dict, results: list[dict]) -> None:
    results.append(record)
    print(json.dumps(record), flush=True)


def _rss_mb(pid: int) -> float | None:
    """Resident memory of the server: the process and all its children (PostgreSQL's backends)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return round(total / 1024, 1) if total else None


def _progress(label: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        filled = int(width * done / max(total, 1))
        print(f"\r{label:<14} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def run(args: argparse.Namespace, dsn: str, pid: int | None, system: str) -> list[dict]:
    """The workload against one server; returns (and prints as JSON lines) its measurements."""
    import psycopg

    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    texts = [_vec(v) for v in X]
    X = np.array([[float(x) for x in t[1:-1].split(",")] for t in texts], dtype=np.float32)  # as stored
    results: list[dict] = []
    label = {"system": system, "dsn": dsn.split(" password=")[0], "rows": args.rows, "dim": args.dim}
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for t in ("bench_copy", "bench_multi", "bench_many"):
            c.execute(f"DROP TABLE IF EXISTS {t}")
            c.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, embedding vector({args.dim}))")

        t0 = time.perf_counter()
        with c.cursor().copy("COPY bench_copy (id, embedding) FROM STDIN") as cp:
            for start, end in _chunks(args.rows, 5000):
                cp.write("".join(f"{i}\t{texts[i]}\n" for i in range(start, end)))
                _progress("copy", end, args.rows)
        dt = time.perf_counter() - t0
        _emit({**label, "phase": "copy", "rows_per_s": round(args.rows / dt), "seconds": round(dt, 3)}, results)

        n_multi = min(args.rows, 50_000)
        t0 = time.perf_counter()
        for start, end in _chunks(n_multi, args.batch):
            values = ",".join(f"({i},'{texts[i]}')" for i in range(start, end))
            c.execute(f"INSERT INTO bench_multi (id, embedding) VALUES {values}")
            _progress("insert_multi", end, n_multi)
        dt = time.perf_counter() - t0
        _emit({**label, "phase": "insert_multi", "batch": args.batch, "rows_per_s": round(n_multi / dt),
               "seconds": round(dt, 3)}, results)

        n_many = min(args.rows, args.executemany_rows)
        t0 = time.perf_counter()
        with c.cursor() as cur:
            cur.executemany("INSERT INTO bench_many (id, embedding) VALUES (%s, %s)",
                            [(i, texts[i]) for i in range(n_many)])
        dt = time.perf_counter() - t0
        _emit({**label, "phase": "executemany", "rows_per_s": round(n_many / dt), "seconds": round(dt, 3)},
              results)

        assert c.execute("SELECT count(*) FROM bench_copy").fetchone()[0] == args.rows
        if pid:
            _emit({**label, "phase": "rss", "rss_mb": _rss_mb(pid)}, results)

        queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        lat = []
        recall = []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            rows = c.execute("SELECT id FROM bench_copy ORDER BY embedding <-> %s LIMIT 10", [_vec(q)],
                             prepare=True).fetchall()
            lat.append(time.perf_counter() - t0)
            truth = np.argsort(((X - q) ** 2).sum(1))[:10]
            recall.append(len({r[0] for r in rows} & set(truth.tolist())) / 10)
            _progress("exact_topk", i + 1, args.queries)
        lat_ms = np.array(lat) * 1000
        _emit({**label, "phase": "exact_topk", "k": 10, "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
               "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
               "qps_1_client": round(1000 / float(lat_ms.mean()), 1), "recall": float(np.mean(recall))}, results)
        if pid:
            _emit({**label, "phase": "rss_after_queries", "rss_mb": _rss_mb(pid)}, results)
        for t in ("bench_copy", "bench_multi", "bench_many"):
            c.execute(f"DROP TABLE {t}")
    return results


_LABELS = ("system", "dsn", "rows", "dim", "phase")


def print_table(results: list[dict]) -> None:
    """Markdown: one row per (phase, figure), one column per system, and sqlvec / peer when both ran."""
    systems = list(dict.fromkeys(r["system"] for r in results))
    figures: dict[tuple[str, str], dict[str, object]] = {}
    for r in results:
        for key, value in r.items():
            if key not in _LABELS:
                figures.setdefault((r["phase"], key), {})[r["system"]] = value
    ratio = len(systems) == 2
    print("\n| phase | figure | " + " | ".join(systems) + (" | ratio |" if ratio else " |"))
    print("| --- | --- | " + " | ".join("---" for _ in systems) + (" | --- |" if ratio else " |"))
    for (phase, key), by_system in figures.items():
        cells = [str(by_system.get(s, "")) for s in systems]
        line = f"| {phase} | {key} | " + " | ".join(cells) + " |"
        if ratio:
            a, b = (by_system.get(s) for s in systems)
            line += f" {a / b:.2f} |" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else " |"
        print(line)


def start_local_server(data: str) -> dict:
    """Start ``sqlvec serve`` on a free port; returns its dsn, pid and a stop function."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "sqlvec", "serve", "--port", "0", "--data", data],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode()
        if line.startswith("sqlvec ready on "):
            port = int(line.strip().rsplit(":", 1)[1])
            break
    else:
        raise RuntimeError("server did not start")

    def stop() -> None:
        proc.terminate()
        proc.wait(30)

    return {"dsn": f"host=127.0.0.1 port={port} user=postgres dbname=sqlvec", "pid": proc.pid, "stop": stop}


def main_with_local_server(args: argparse.Namespace) -> int:
    """Run the workload on ``--dsn`` (or a sqlvec server started here), then on ``--peer``, if any."""
    import tempfile

    results: list[dict] = []
    if args.dsn is not None:
        results += run(args, args.dsn, args.server_pid, args.system)
    else:
        tmp = tempfile.mkdtemp(prefix="sqlvec-bench-")
        server = start_local_server(os.path.join(tmp, "data"))
        try:
            results += run(args, server["dsn"], server["pid"], "sqlvec")
        finally:
            server["stop"]()
    if args.peer == "pgserver":
        from sqlvec import pgref

        peer = pgref.start(durable=True)  # fsync and synchronous commit on, as sqlvec commits
        try:
            results += run(args, peer.dsn, peer.proc.pid, f"pgvector ({peer.version()})")
        finally:
            peer.stop()
    print_table(results)
    return 0
