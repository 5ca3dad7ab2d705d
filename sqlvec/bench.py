"""``sqlvec bench``: ingest, index build and approximate-nearest-neighbour search figures over psycopg,
against any PostgreSQL DSN that speaks pgvector SQL.

By default it starts its own sqlvec server on a temporary data directory; ``--dsn`` measures a running
server instead, and ``--peer pgserver`` also measures PostgreSQL + pgvector started from the ``pgserver``
package, so both are measured in one run, on one machine, on the same data, and printed side by side
with ratios (first system / second, e.g. sqlvec / pgvector). The servers run one after the other.

Data (see sqlvec/bench_data.py): deterministic clustered float32 vectors (--rows x --dim, --seed,
--spread) and query vectors from the same distribution (--queries), or a real embedding set
(--dataset file.npy); exact top-10 ground truth by numpy, for --metric l2 (<->, vector_l2_ops),
cosine (<=>, vector_cosine_ops) or ip (<#>, vector_ip_ops).

Phases (--phases, comma-separated; default copy..sweep; "all" adds filtered and range), in this order:
  copy          load the table (id, embedding, bucket) with COPY ... FROM STDIN (text, the stream built before
                the clock starts), rows/s (the table is loaded whenever a later phase needs it; this phase
                only reports it)
  insert_multi  multi-row INSERT ... VALUES, --batch rows per statement, rows/s (its own table)
  executemany   psycopg executemany of single-row INSERTs (pipelined), rows/s (its own table)
  rss           the server's resident memory after loading (with --server-pid, or for a server started here)
  exact_topk    the no-index baseline: exact top-10 search, QPS / p50 / p99 / recall per client count
  index         for each --indexes spec: CHECKPOINT (done once, after loading; sqlvec seals its growing
                segment, PostgreSQL flushes), then CREATE INDEX with maintenance_work_mem and
                max_parallel_maintenance_workers set for every core; seconds to build, index size
  sweep         for each index, each search setting of its sweep, each --clients count: recall@10, QPS,
                p50 / p99 latency; then DROP INDEX, so each index is measured alone (sweep implies index)
  filtered      for the no-index baseline and each index (after its sweep; filtered implies index), one
                client, one search setting (the middle of the index's sweep, or --filtered-setting):
                SELECT id FROM t WHERE bucket < C ORDER BY embedding <op> $1 LIMIT 10 for C = 1 (1% of the
                rows) and C = 10 (10%), C a literal so the planner sees the selectivity; QPS, p50 / p99,
                recall@10 against the exact top 10 among the matching rows, mean_rows returned and
                short_frac, the fraction of queries returning fewer than min(10, matching) rows (an index
                that filters after its search, as pgvector's do, can return fewer rows than LIMIT), and plan
                (EXPLAIN of the first query, compacted)
  cursors       copy and the cursor phases of sqlvec/bench_cursors.py: cursor_fetch (every row by FETCH 1000
                in a transaction, rows/s and the server's peak RSS), cursor_vector (--iterate-rows rows of
                an ORDER BY distance cursor without LIMIT, rows/s and peak RSS)
  writes        copy and the write phases of sqlvec/bench_writes.py, on a table of their own: copy_binary,
                upsert_batch (in one transaction, HNSW index present), upsert_autocommit (one statement per
                commit), count (SELECT count(*) p50 ms, exact or not), updated (recall and QPS after 20% of
                the rows got new embeddings)
  range         likewise: SELECT id FROM t WHERE embedding <op> $1 < $2, the radius per query halfway between
                the --range-rows-th (default 50) and the next exact distance; QPS, p50 / p99, recall (found &
                exact / exact), mean_rows and plan. pgvector has no index range search (a sequential scan);
                sqlvec uses an index's range search where the index has one
The bucket column is an integer 0..99 per row, uniform from the seed. filtered and range are left out of
the default run because their no-index baselines scan the whole table per query (they add about as much
time again as exact_topk).

Index specs: hnsw:m=16,ef_construction=64 (default), ivfflat:lists=316, ivfpq:lists=316,m=32,nbits=8,
ivfsq8:lists=316, scann:leaves=316, flat; ";setting=v1,v2" overrides the sweep, e.g.
"hnsw:m=16,ef_construction=64;ef_search=20,40,80". Default sweeps: hnsw.ef_search 10..320,
ivfflat.probes 1..32 (ivfpq and ivfsq8 also with sqlvec.rerank = 4), scann.leaves_to_search 1..32.
Specs a system cannot build (pgvector has only hnsw and ivfflat) are reported as skipped for it.

Clients (--clients, default 1,4) are separate processes, each with its own connection and session
settings, running SELECT id FROM t ORDER BY embedding <op> $1 LIMIT 10 prepared, the query vector sent in
pgvector's text form (--query-format binary: its binary form), over their share of the queries after a
warm-up; a measurement repeats the queries until --min-time seconds have passed (recall counts the first
pass). QPS is all queries run over the wall time; p50 / p99 are per-query latencies in ms.

Output: one JSON object per measurement on stdout (filtered: filter, selectivity, matching_rows, setting,
qps, p50_ms, p99_ms, recall, mean_rows, short_frac, mean_true_rows, plan; range: range_rows, mean_radius
and the same figures); at the end markdown tables (load and build figures; recall and QPS per index and
setting; the filtered and range phases, both systems side by side with QPS ratios; the best setting per
system at --target-recall and QPS at equal recall, interpolated along each curve) and a recall-vs-QPS plot
(--plot, needs matplotlib). Progress bars go to stderr. Benchmarks are not tests: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlvec import bench_ann, bench_cursors, bench_data, bench_report, bench_writes

DEFAULT_PHASES = ("copy", "insert_multi", "executemany", "rss", "exact_topk", "index", "sweep")
PHASES = DEFAULT_PHASES + ("filtered", "range") + bench_writes.PHASES + bench_cursors.PHASES
WRITES = ("copy",) + bench_writes.PHASES  # --phases writes
CURSORS = ("copy",) + bench_cursors.PHASES  # --phases cursors
INDEX_PHASES = {"index", "sweep", "filtered", "range"}  # the phases that build each --indexes spec
FILTER_CUTS = (1, 10)  # filtered phase: bucket < 1 (1% of the rows), bucket < 10 (10%)
TABLE = "bench_vectors"
K = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dsn", default=None, help="PostgreSQL connection string; default: start a sqlvec server "
                                                 "on a temporary data directory")
    p.add_argument("--system", default="server", help="name of the --dsn server in the output")
    p.add_argument("--server-pid", type=int, default=None, help="pid of the --dsn server, to report its RSS")
    p.add_argument("--peer", choices=["pgserver"], default=None,
                   help="also run the workload on PostgreSQL + pgvector started from the pgserver package "
                        "(the pgref extra), fsync on, and print both side by side with ratios")
    d = p.add_argument_group("data")
    d.add_argument("--rows", type=int, default=100_000, help="rows to load (default 100000)")
    d.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    d.add_argument("--queries", type=int, default=1000, help="query vectors (default 1000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--spread", type=float, default=1.5,
                   help="cluster spread of the synthetic data; larger is harder (default 1.5)")
    d.add_argument("--metric", choices=sorted(bench_data.METRICS), default="l2",
                   help="l2 (<->), cosine (<=>) or ip (<#>); selects the operator, opclass and ground truth")
    d.add_argument("--dataset", default=None, metavar="FILE.npy",
                   help="a real embedding set instead of synthetic data: 2-D float array; its last --queries "
                        "rows are the queries unless --dataset-queries is given (none is shipped)")
    d.add_argument("--dataset-queries", default=None, metavar="FILE.npy", help="query vectors for --dataset")
    w = p.add_argument_group("workload")
    w.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)}, or writes (copy and the write phases), "
                        "or all (default: all but filtered, range and the write phases)")
    w.add_argument("--batch", type=int, default=1000, help="rows per multi-row INSERT")
    w.add_argument("--executemany-rows", type=int, default=20_000, help="rows for the executemany phase")
    w.add_argument("--iterate-rows", type=int, default=50_000,
                   help="rows the cursor_vector phase reads from its vector iterator (default 50000)")
    w.add_argument("--upsert-rows", type=int, default=10_000, help="upserts in one transaction (default 10000)")
    w.add_argument("--autocommit-rows", type=int, default=1000,
                   help="upserts one autocommit statement each (default 1000)")
    w.add_argument("--indexes", action="append", default=None, metavar="SPEC",
                   help="index specs, whitespace-separated or the option repeated "
                        "(default 'hnsw:m=16,ef_construction=64'; see above)")
    w.add_argument("--clients", default="1,4", help="concurrent client processes per measurement (default 1,4)")
    w.add_argument("--warmup", type=int, default=10, help="warm-up queries per client before timing (default 10)")
    w.add_argument("--min-time", type=float, default=2.0,
                   help="seconds each measurement lasts at least: clients repeat their queries until then; recall "
                        "counts the first pass (default 2)")
    w.add_argument("--filtered-setting", default=None, metavar="SETTINGS",
                   help="search settings of the filtered and range phases, applied with every index, e.g. "
                        "ef_search=40 or probes=8,rerank=4 (default: the middle of each index's sweep)")
    w.add_argument("--range-rows", type=int, default=50,
                   help="range phase: rows inside each query's radius in the exact answer (default 50)")
    w.add_argument("--query-format", choices=["text", "binary"], default="text",
                   help="how query vectors are sent: pgvector text '[...]' or its binary form (default text)")
    w.add_argument("--maintenance-work-mem", default=None,
                   help="maintenance_work_mem for index builds (default: 2GB, or a quarter of the available "
                        "memory if less)")
    w.add_argument("--maintenance-workers", type=int, default=None,
                   help="max_parallel_maintenance_workers for index builds (default: cores - 1)")
    o = p.add_argument_group("output")
    o.add_argument("--target-recall", type=float, default=0.95,
                   help="recall@10 at which systems are compared (default 0.95)")
    o.add_argument("--plot", default=None, metavar="PATH",
                   help="recall-vs-QPS plot (PNG; needs matplotlib); default bench-<timestamp>.png in the current "
                        "directory; 'none' for no plot")


@dataclass
class System:
    """One server to measure."""

    name: str
    dsn: str
    pid: int | None
    server: str  # version text for the output
    methods: tuple[str, ...] | None = None  # index methods it has, when known; None: try every spec


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


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_maintenance_work_mem() -> str:
    """2GB, or a quarter of the available memory when that is less."""
    try:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return f"{min(2048, max(64, avail_kb // 4 // 1024))}MB"
    except (OSError, StopIteration, ValueError):
        return "2GB"


def _try(c: Any, sql: str) -> tuple[float | None, str | None]:
    """Run one statement; (seconds, None) or (None, error text)."""
    import psycopg

    t0 = time.perf_counter()
    try:
        c.execute(sql)
    except psycopg.Error as e:
        return None, bench_ann.error_text(e)
    return round(time.perf_counter() - t0, 3), None


def run(args: argparse.Namespace, work: bench_data.Workload, system: System) -> list[dict]:
    """The workload against one server; returns (and prints as JSON lines) its measurements."""
    import psycopg

    phases = set(args.phases)
    specs: list[bench_ann.IndexSpec] = args.index_specs
    clients: list[int] = args.client_counts
    op, opclass = bench_data.METRICS[work.metric]
    results: list[dict] = []
    label = {"system": system.name, "rows": work.rows, "dim": work.dim}
    _emit({**label, "phase": "server", "server": system.server, "dsn": system.dsn.split(" password=")[0],
           "cores": cores(), **work.describe()}, results)
    texts = work.texts
    needs_table = bool(phases & ({"copy", "rss", "exact_topk"} | INDEX_PHASES | set(bench_cursors.PHASES)))
    pool: bench_ann.ClientPool | None = None
    extra: list[Extra] = []
    with psycopg.connect(system.dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for t in (TABLE, "bench_multi", "bench_many"):
            c.execute(f"DROP TABLE IF EXISTS {t}")
        try:
            if needs_table:
                c.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector({work.dim}), bucket int)")
                buckets = work.buckets.tolist()
                pieces = [("".join(f"{i}\t{texts[i]}\t{buckets[i]}\n" for i in range(start, end)).encode(), end)
                          for start, end in _chunks(work.rows, 5000)]  # built before the clock starts
                bar = bench_report.Progress(f"{system.name}: copy", work.rows, " rows")
                t0 = time.perf_counter()
                with c.cursor().copy(f"COPY {TABLE} (id, embedding, bucket) FROM STDIN") as cp:
                    for piece, end in pieces:
                        cp.write(piece)
                        bar.update(end)
                del pieces
                dt = time.perf_counter() - t0
                bar.finish()
                if "copy" in phases:
                    _emit({**label, "phase": "copy", "rows_per_s": round(work.rows / dt), "seconds": round(dt, 3)},
                          results)

            if "insert_multi" in phases:
                n_multi = min(work.rows, 50_000)
                c.execute(f"CREATE TABLE bench_multi (id bigint PRIMARY KEY, embedding vector({work.dim}))")
                bar = bench_report.Progress(f"{system.name}: insert_multi", n_multi, " rows")
                t0 = time.perf_counter()
                for start, end in _chunks(n_multi, args.batch):
                    values = ",".join(f"({i},'{texts[i]}')" for i in range(start, end))
                    c.execute(f"INSERT INTO bench_multi (id, embedding) VALUES {values}")
                    bar.update(end)
                dt = time.perf_counter() - t0
                bar.finish()
                _emit({**label, "phase": "insert_multi", "batch": args.batch, "rows_per_s": round(n_multi / dt),
                       "seconds": round(dt, 3)}, results)

            if "executemany" in phases:
                n_many = min(work.rows, args.executemany_rows)
                c.execute(f"CREATE TABLE bench_many (id bigint PRIMARY KEY, embedding vector({work.dim}))")
                bar = bench_report.Progress(f"{system.name}: executemany", None)
                t0 = time.perf_counter()
                with c.cursor() as cur:
                    cur.executemany("INSERT INTO bench_many (id, embedding) VALUES (%s, %s)",
                                    [(i, texts[i]) for i in range(n_many)])
                dt = time.perf_counter() - t0
                bar.finish(f"{n_many} rows")
                _emit({**label, "phase": "executemany", "rows_per_s": round(n_many / dt), "seconds": round(dt, 3)},
                      results)

            if needs_table:
                count = c.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
                if not count or count[0] != work.rows:
                    raise RuntimeError(f"{system.name}: {TABLE} has {count} rows after COPY, expected {work.rows}")
            if "rss" in phases and system.pid:
                _emit({**label, "phase": "rss", "rss_mb": _rss_mb(system.pid)}, results)
            for t in ("bench_multi", "bench_many"):
                c.execute(f"DROP TABLE IF EXISTS {t}")
            if phases & set(bench_cursors.PHASES):
                bench_cursors.run(args, c, TABLE, work.query_texts[0], op, label, system.pid, _rss_mb,
                                  lambda record: _emit(record, results))
            if phases & set(bench_writes.PHASES):
                bench_writes.run(args, c, work, label, op, opclass, lambda record: _emit(record, results))

            if not phases & ({"exact_topk"} | INDEX_PHASES):
                return results
            prep: dict[str, Any] = {**label, "phase": "prepare"}
            for key, sql in (("vacuum_analyze", f"VACUUM ANALYZE {TABLE}"), ("checkpoint", "CHECKPOINT")):
                seconds, error = _try(c, sql)
                prep[f"{key}_s"] = seconds
                if error:
                    prep[f"{key}_error"] = error
            _emit(prep, results)

            sql = f"SELECT id FROM {TABLE} ORDER BY embedding {op} %{'b' if args.query_format == 'binary' else 's'} " \
                  f"LIMIT {K}"
            if phases & {"exact_topk", "sweep"}:
                params = bench_ann.encode_binary(work.queries) if args.query_format == "binary" else work.query_texts
                pool = bench_ann.ClientPool(system.dsn, max(clients), sql, params, args.query_format == "binary")
            common = {"k": K, "queries": len(work.query_texts), "query_format": args.query_format}
            extra = _extra_pools(args, system, work, op)

            if "exact_topk" in phases and pool is not None:
                bar = bench_report.Progress(f"{system.name}: exact_topk", len(work.query_texts) * len(clients), " q")
                done = 0
                for n in clients:
                    record = {**label, "phase": "exact_topk", "index": bench_report.EXACT_INDEX, "setting": "",
                              "clients": n, **common}
                    _emit(_measure(pool, n, (), args.warmup, args.min_time, work, record, bar, done), results)
                    done += len(work.query_texts)
                    bar.update(done)
                bar.finish()
            _run_extra(args, c, system, work, extra, {**label, "index": bench_report.EXACT_INDEX}, (), results)

            if phases & INDEX_PHASES:
                for number, spec in enumerate(specs):
                    _index_and_sweep(args, c, system, work, spec, f"bench_{spec.method}_{number}", opclass, pool,
                                     extra, label, common, results)

            if "rss" in phases and system.pid:
                _emit({**label, "phase": "rss_after_queries", "rss_mb": _rss_mb(system.pid)}, results)
        finally:
            for pooled in [pool] + [e.pool for e in extra]:
                if pooled is not None:
                    pooled.close()
            for t in (TABLE, "bench_multi", "bench_many"):
                try:
                    c.execute(f"DROP TABLE IF EXISTS {t}")
                except psycopg.Error:
                    pass
    return results


def _measure(pool: bench_ann.ClientPool, n: int, settings: tuple[tuple[str, str], ...], warmup: int,
             min_time: float, work: bench_data.Workload, record: dict, bar: bench_report.Progress, done: int
             ) -> dict:
    """One measurement with ``n`` clients; ``record`` completed with its figures, or with ``error``."""
    per = len(work.query_texts)
    result = pool.measure(n, settings, warmup, min_time,
                          lambda q: bar.update(done + min(q, per), record.get("setting", "")))
    if "error" in result:
        return {**record, "skipped": True, "error": result["error"]}
    out = {**record, **bench_ann.summarise(result, work.truth), "executed": len(result["lat"]),
           "wall_s": round(result["wall_s"], 3)}
    if "search" in result:
        out["search"] = result["search"]
    return out


def _index_and_sweep(args: argparse.Namespace, c: Any, system: System, work: bench_data.Workload,
                     spec: bench_ann.IndexSpec, name: str, opclass: str, pool: bench_ann.ClientPool | None,
                     extra: list[Extra], label: dict, common: dict, results: list[dict]) -> None:
    """Build one index, sweep its settings, run the filtered and range phases, drop it. What cannot be built
    is reported as skipped."""
    import psycopg

    phases = set(args.phases)
    base = {**label, "index": spec.label, "method": spec.method}
    sweeping = "sweep" in phases and pool is not None
    measured = (["sweep"] if sweeping else []) + list(dict.fromkeys(e.phase for e in extra))
    if system.methods is not None and spec.method not in system.methods:
        why = f"{system.name} has no index method {spec.method!r} (only {', '.join(system.methods)})"
        _emit({**base, "phase": "index", "skipped": why}, results)
        for phase in measured:
            _emit({**base, "phase": phase, "skipped": why}, results)
        return
    workers = args.maintenance_workers if args.maintenance_workers is not None else max(0, cores() - 1)
    build_settings = [("maintenance_work_mem", f"'{args.maintenance_work_mem or default_maintenance_work_mem()}'"),
                      ("max_parallel_maintenance_workers", str(workers))]
    if workers > 8:  # PostgreSQL's default cap on parallel workers, also capped by max_worker_processes
        build_settings.append(("max_parallel_workers", str(workers)))
    # PostgreSQL sizes a parallel build by the table's size unless the table says how many workers to use.
    _, reloption_error = _try(c, f"ALTER TABLE {TABLE} SET (parallel_workers = {workers})")
    _try(c, f"DROP INDEX IF EXISTS {name}")
    create = spec.create_sql(name, TABLE, opclass)
    bar = bench_report.Progress(f"{system.name}: index {spec.label}")
    try:
        built = bench_ann.build_index(system.dsn, create, name, build_settings,
                                      lambda fraction, phase: bar.update(note=phase, fraction=fraction))
    except psycopg.Error as e:
        bar.finish("failed")
        why = f"CREATE INDEX failed: {bench_ann.error_text(e)}"
        _emit({**base, "phase": "index", "sql": create, "skipped": why}, results)
        for phase in measured:
            _emit({**base, "phase": phase, "skipped": why}, results)
        return
    bar.finish()
    if reloption_error is None:
        built["build_settings"]["table parallel_workers"] = str(workers)
    record = {**base, "phase": "index", "sql": create, "build_s": built["build_s"], "cores": cores(),
              **{k: v for k, v in built.items() if k != "build_s"}}
    if system.pid:
        record["rss_mb"] = _rss_mb(system.pid)
    _emit(record, results)
    try:
        if sweeping and pool is not None:
            grid = spec.settings_grid()
            clients = args.client_counts
            bar = bench_report.Progress(f"{system.name}: sweep {spec.label}",
                                        len(grid) * len(clients) * len(work.query_texts), " q")
            done = 0
            for settings in grid:
                for n in clients:
                    point = {**base, "phase": "sweep", "setting": bench_ann.setting_label(settings), "clients": n,
                             **common, "build_s": built["build_s"]}
                    _emit(_measure(pool, n, settings, args.warmup, args.min_time, work, point, bar, done), results)
                    done += len(work.query_texts)
                    bar.update(done)
            bar.finish()
        _run_extra(args, c, system, work, extra, {**base, "build_s": built["build_s"]},
                   bench_ann.single_setting(spec, args.filtered_settings), results)
    finally:
        _, error = _try(c, f"DROP INDEX {name}")
        if error:
            print(f"note: DROP INDEX {name} on {system.name} failed: {error}", file=sys.stderr)


@dataclass
class Extra:
    """One measurement of the filtered or range phase, repeated for the baseline and each index: its own
    one-client pool (the statement differs), its ground truth and its fixed fields."""

    phase: str
    sql: str
    pool: bench_ann.ClientPool
    truth: Any  # per query, the true row ids
    fields: dict
    explain_params: tuple


def _extra_pools(args: argparse.Namespace, system: System, work: bench_data.Workload, op: str) -> list[Extra]:
    """The filtered (one per bucket cut) and range measurements that ``--phases`` asks for."""
    binary = args.query_format == "binary"
    mark = "%b" if binary else "%s"
    vectors: list[Any] = bench_ann.encode_binary(work.queries) if binary else list(work.query_texts)
    common = {"clients": 1, "queries": len(work.query_texts), "query_format": args.query_format}
    out: list[Extra] = []
    if "filtered" in args.phases:
        for cut in FILTER_CUTS:
            sql = f"SELECT id FROM {TABLE} WHERE bucket < {cut} ORDER BY embedding {op} {mark} LIMIT {K}"
            fields = {"filter": f"bucket < {cut}", "selectivity": cut / bench_data.BUCKETS,
                      "matching_rows": int((work.buckets < cut).sum()), "k": K, **common}
            out.append(Extra("filtered", sql, bench_ann.ClientPool(system.dsn, 1, sql, vectors, binary),
                             work.filter_truth[cut], fields, (work.query_texts[0],)))
    if "range" in args.phases:
        assert work.range_radii is not None
        radii = [float(r) for r in work.range_radii]
        sql = f"SELECT id FROM {TABLE} WHERE embedding {op} {mark} < %s"
        fields = {"range_rows": args.range_rows, "mean_radius": round(float(sum(radii) / len(radii)), 4), **common}
        out.append(Extra("range", sql, bench_ann.ClientPool(system.dsn, 1, sql, list(zip(vectors, radii)), binary),
                         work.range_truth, fields, (work.query_texts[0], radii[0])))
    return out


def _plan(c: Any, sql: str, params: tuple, settings: tuple[tuple[str, str], ...]) -> str:
    """EXPLAIN of one query under ``settings``, its parameters as literals, compacted to its plan nodes (costs
    dropped), or the error."""
    import re

    import psycopg

    try:
        for key, value in settings:
            c.execute(f"SET {key} = {value}")
        # Parameters bound client-side, as literals: the statement EXPLAINed is the one the planner sees.
        cur = psycopg.ClientCursor(c)
        lines = [str(row[0]) for row in cur.execute("EXPLAIN " + sql.replace("%b", "%s"), params).fetchall()]
    except psycopg.Error as e:
        return f"EXPLAIN failed: {bench_ann.error_text(e)}"
    finally:
        for key, _ in settings:
            _try(c, f"RESET {key}")
    text = "\n".join(lines)
    nodes = [re.sub(r"^\s*->\s*", "", re.sub(r"\s*\(cost=.*?\)", "", line)).strip()
             for i, line in enumerate(text.splitlines()) if i == 0 or line.lstrip().startswith("->")]
    return " > ".join(n for n in nodes if n)


def _run_extra(args: argparse.Namespace, c: Any, system: System, work: bench_data.Workload, extra: list[Extra],
               base: dict, settings: tuple[tuple[str, str], ...], results: list[dict]) -> None:
    """The filtered and range measurements with the index of ``base`` (or none) under ``settings``."""
    if not extra:
        return
    per = len(work.query_texts)
    bar = bench_report.Progress(f"{system.name}: filtered/range {base['index']}", per * len(extra), " q")
    for number, e in enumerate(extra):
        done = number * per
        record = {**base, "phase": e.phase, "setting": bench_ann.setting_label(settings), **e.fields}
        result = e.pool.measure(1, settings, args.warmup, args.min_time,
                                lambda q, done=done, note=e.phase: bar.update(done + min(q, per), note))
        if "error" in result:
            record.update({"skipped": True, "error": result["error"]})
        else:
            record.update({**bench_ann.summarise_sets(result, e.truth), "executed": len(result["lat"]),
                           "wall_s": round(result["wall_s"], 3)})
            if "search" in result:
                record["search"] = result["search"]
        record["plan"] = _plan(c, e.sql, e.explain_params, settings)
        _emit(record, results)
        bar.update(done + per)
    bar.finish()


def start_local_server(data: str) -> dict:
    """Start ``sqlvec serve`` on a free port; returns its dsn, pid, log path and a stop function. Its stderr
    (the log) is drained into ``<data>.log`` so the server never blocks on a full pipe."""
    import subprocess
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "sqlvec", "serve", "--port", "0", "--data", data],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    log_path = data.rstrip("/") + ".log"
    log = open(log_path, "ab")
    for raw in proc.stderr:
        log.write(raw)
        line = raw.decode(errors="replace")
        if line.startswith("sqlvec ready on "):
            port = int(line.strip().rsplit(":", 1)[1])
            break
    else:
        proc.wait(10)
        log.close()
        raise RuntimeError(f"sqlvec server did not start; its log: {log_path}")

    def pump() -> None:
        assert proc.stderr is not None
        for chunk in proc.stderr:
            log.write(chunk)
            log.flush()

    threading.Thread(target=pump, daemon=True).start()

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    return {"dsn": f"host=127.0.0.1 port={port} user=postgres dbname=sqlvec", "pid": proc.pid, "stop": stop,
            "log": log_path, "proc": proc}


def _server_version(dsn: str) -> str:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute("SELECT version()").fetchone()
            text = str(row[0]).split(" on ")[0] if row else ""
            try:
                ext = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
                if ext:
                    text += f", pgvector {ext[0]}"
            except psycopg.Error:
                pass
            return text
    except psycopg.Error as e:
        return f"unknown ({bench_ann.error_text(e)})"


def _parse_args(args: argparse.Namespace) -> None:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if "all" in phases:
        phases = list(PHASES)
    if "writes" in phases:
        phases = [p for p in phases if p != "writes"] + [p for p in WRITES if p not in phases]
    if "cursors" in phases:
        phases = [p for p in phases if p != "cursors"] + [p for p in CURSORS if p not in phases]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise SystemExit(f"--phases: unknown {', '.join(unknown)} (known: {', '.join(PHASES)})")
    args.phases = phases
    try:
        args.client_counts = sorted({int(x) for x in args.clients.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--clients {args.clients!r}: expected numbers like 1,4") from None
    if not args.client_counts or min(args.client_counts) < 1:
        raise SystemExit("--clients: at least one count, each >= 1")
    try:
        args.index_specs = bench_ann.parse_index_specs(args.indexes or ["hnsw:m=16,ef_construction=64"])
    except ValueError as e:
        raise SystemExit(f"--indexes: {e}") from None
    try:
        args.filtered_settings = bench_ann.parse_settings(args.filtered_setting or "")
    except ValueError as e:
        raise SystemExit(f"--filtered-setting: {e}") from None
    if args.queries < 1 or args.rows < 1:
        raise SystemExit("--rows and --queries must be at least 1")
    if args.range_rows < 1:
        raise SystemExit("--range-rows must be at least 1")


def main_with_local_server(args: argparse.Namespace) -> int:
    """Run the workload on ``--dsn`` (or a sqlvec server started here), then on ``--peer``, if any; then
    print the tables and draw the plot."""
    import shutil
    import tempfile

    _parse_args(args)
    bar = bench_report.Progress("preparing data")
    work = bench_data.build(args.rows, args.dim, args.queries, args.seed, args.spread, args.metric, args.dataset,
                            args.dataset_queries, K)
    bar.finish(f"{work.rows} x {work.dim}, {len(work.query_texts)} queries, ground truth top-{K} ({work.metric})")
    if "filtered" in args.phases:
        bar = bench_report.Progress("ground truth: filtered")
        work.add_filter_truth(FILTER_CUTS, K)
        bar.finish(", ".join(f"bucket < {cut}: {int((work.buckets < cut).sum())} rows" for cut in FILTER_CUTS))
    if "range" in args.phases:
        bar = bench_report.Progress("ground truth: range")
        work.add_range_truth(args.range_rows)
        assert work.range_truth is not None
        bar.finish(f"radius per query, {sum(map(len, work.range_truth)) / len(work.range_truth):.1f} rows inside "
                   "on average")

    results: list[dict] = []
    if args.dsn is not None:
        results += run(args, work, System(args.system, args.dsn, args.server_pid, _server_version(args.dsn)))
    else:
        tmp = tempfile.mkdtemp(prefix="sqlvec-bench-")
        server = start_local_server(os.path.join(tmp, "data"))
        try:
            from importlib.metadata import version as package_version

            version = package_version("sqlvec")
        except Exception:  # not installed as a package: run from the source tree
            version = "(source tree)"
        try:
            results += run(args, work, System("sqlvec", server["dsn"], server["pid"], f"sqlvec {version}"))
        except BaseException:
            if server["proc"].poll() is not None:
                print(f"sqlvec server exited ({server['proc'].returncode}); its log is kept at {server['log']}",
                      file=sys.stderr)
                tmp = ""
            raise
        finally:
            server["stop"]()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    if args.peer == "pgserver":
        from sqlvec import pgref

        peer = pgref.start(durable=True)  # fsync and synchronous commit on, as sqlvec commits
        try:
            results += run(args, work, System("pgvector", peer.dsn, peer.proc.pid, peer.version(),
                                              bench_ann.PGVECTOR_METHODS))
        finally:
            peer.stop()

    report(args, work, results)
    return 0


def report(args: argparse.Namespace, work: bench_data.Workload, results: list[dict]) -> None:
    """The JSON lines of the derived figures, the markdown tables and the plot."""
    for record in bench_report.at_recall_records(results, args.target_recall):
        print(json.dumps({**record, "rows": work.rows, "dim": work.dim}), flush=True)
    print("\nsystems: " + "; ".join(f"{r['system']} = {r['server']}" for r in results if r["phase"] == "server"))
    print(f"data: {work.rows:,} x {work.dim} float32, {work.source}; {len(work.query_texts)} queries, "
          f"top-{K}, metric {work.metric}; {cores()} cores; query vectors sent as {args.query_format}")
    bench_report.print_load_table(results)
    bench_report.print_ann_table(results)
    bench_report.print_filtered_table(results)
    bench_report.print_range_table(results)
    bench_report.print_best(results, args.target_recall)
    if args.plot != "none" and bench_report.curves(results):
        path = args.plot or f"bench-{time.strftime('%Y%m%d-%H%M%S')}.png"
        title = (f"recall@{K} vs QPS: {work.rows:,} x {work.dim} {work.metric}, {work.source}; "
                 f"{cores()} cores")
        written = bench_report.plot(results, path, args.target_recall, title)
        if written:
            print(f"\nplot: {os.path.abspath(written)}")
