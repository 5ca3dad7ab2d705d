"""Approximate-nearest-neighbour measurements of ``sqlvec bench``: index specs, index builds, and the
recall / throughput sweep with concurrent clients.

Index specs (``--indexes``, whitespace-separated or the option repeated)::

    method[:param=value,...][;setting=v1,v2,...]...

for example ``hnsw:m=16,ef_construction=64``, ``ivfflat:lists=316``, ``ivfpq:lists=316,m=32,nbits=8``,
``ivfsq8:lists=316``, ``scann:leaves=316``, ``flat``, or with the sweep overridden:
``hnsw:m=16,ef_construction=64;ef_search=20,40,80`` and ``ivfpq:lists=316,m=32;probes=4,16;rerank=1,4``.
The build parameters go into ``CREATE INDEX ... WITH (...)`` as written. A setting is a search setting's
full name (``hnsw.ef_search``) or its short name (``ef_search``, ``probes``, ``rerank``, ``leaves_to_search``,
``reorder``); the sweep runs over every combination of the values given, and the method's default sweep
fills in the settings not named.

Each client is its own process (``multiprocessing``, spawn) with its own psycopg connection, opened anew for
every measurement, so its ``SET``s apply to that session only and the client's Python is not the bottleneck.
A client runs ``SELECT id FROM t ORDER BY embedding <op> %s LIMIT k`` with ``prepare=True`` over its
interleaved share of the queries, after a warm-up over its first few; clients start together. QPS is all
queries over the wall time from the first client's start to the last one's end.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SETTING_ALIASES = {
    "ef_search": "hnsw.ef_search",
    "probes": "ivfflat.probes",
    "rerank": "sqlvec.rerank",
    "leaves_to_search": "scann.leaves_to_search",
    "reorder": "scann.reorder",
}

_DOUBLING = ("1", "2", "4", "8", "16", "32")
DEFAULT_SWEEPS: dict[str, dict[str, tuple[str, ...]]] = {
    "hnsw": {"hnsw.ef_search": ("10", "20", "40", "80", "160", "320")},
    "ivfflat": {"ivfflat.probes": _DOUBLING},
    "ivfpq": {"ivfflat.probes": _DOUBLING, "sqlvec.rerank": ("4",)},
    "ivfsq8": {"ivfflat.probes": _DOUBLING, "sqlvec.rerank": ("4",)},
    "scann": {"scann.leaves_to_search": _DOUBLING},
    "flat": {},
}

PGVECTOR_METHODS = ("hnsw", "ivfflat")


@dataclass(frozen=True)
class IndexSpec:
    """One ``--indexes`` entry: how to build the index and which search settings to sweep."""

    method: str
    params: tuple[tuple[str, str], ...]
    sweep: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def label(self) -> str:
        """``method:p=v,...`` without the sweep: the index's name in the output."""
        return self.method + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")

    def settings_grid(self) -> list[tuple[tuple[str, str], ...]]:
        """Every combination of the sweep's values, as (setting, value) pairs to ``SET``."""
        if not self.sweep:
            return [()]
        names = [name for name, _ in self.sweep]
        return [tuple(zip(names, combo)) for combo in itertools.product(*(values for _, values in self.sweep))]

    def create_sql(self, name: str, table: str, opclass: str) -> str:
        with_clause = f" WITH ({', '.join(f'{k} = {v}' for k, v in self.params)})" if self.params else ""
        return f"CREATE INDEX {name} ON {table} USING {self.method} (embedding {opclass}){with_clause}"


def parse_index_spec(text: str) -> IndexSpec:
    """``hnsw:m=16,ef_construction=64;ef_search=20,40`` -> IndexSpec (see the module docstring)."""
    head, *sweeps = [part.strip() for part in text.strip().split(";")]
    method, _, param_text = head.partition(":")
    method = method.strip().lower()
    if not method.isidentifier():
        raise ValueError(f"index spec {text!r}: bad method name {method!r}")
    params: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in param_text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier() or not value.strip():
            raise ValueError(f"index spec {text!r}: build parameter {item!r} is not name=value")
        params.append((key.strip(), value.strip()))
    sweep = dict(DEFAULT_SWEEPS.get(method, {}))
    for item in filter(None, sweeps):
        key, eq, values = item.partition("=")
        name = SETTING_ALIASES.get(key.strip(), key.strip())
        vals = tuple(v.strip() for v in values.split(",") if v.strip())
        if not eq or not vals or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"index spec {text!r}: sweep {item!r} is not setting=v1,v2,...")
        if not all(v.replace(".", "", 1).replace("-", "", 1).isalnum() for v in vals):
            raise ValueError(f"index spec {text!r}: sweep values {vals} must be plain numbers or words")
        sweep[name] = vals
    return IndexSpec(method, tuple(params), tuple(sweep.items()))


def parse_settings(text: str) -> tuple[tuple[str, str], ...]:
    """``ef_search=40`` or ``probes=8,rerank=4`` -> (full setting name, value) pairs (short names as in specs)."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        name, value = SETTING_ALIASES.get(key.strip(), key.strip()), value.strip()
        if not eq or not value or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{item!r} is not setting=value")
        if not value.replace(".", "", 1).replace("-", "", 1).isalnum():
            raise ValueError(f"{item!r}: the value must be a plain number or word")
        out[name] = value
    return tuple(out.items())


def single_setting(spec: IndexSpec, override: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    """The one search setting of the filtered and range phases: the middle point of the spec's sweep (its
    upper middle when the sweep has an even count), with ``override``'s settings replacing or added."""
    grid = spec.settings_grid()
    chosen = dict(grid[len(grid) // 2]) if grid else {}
    chosen.update(override)
    return tuple(chosen.items())


def parse_index_specs(values: list[str] | None) -> list[IndexSpec]:
    specs: list[IndexSpec] = []
    for value in values or []:
        specs += [parse_index_spec(t) for t in value.split()]
    return specs


def setting_label(settings: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings)


# ---------------------------------------------------------------------------------------------- index build

def build_index(dsn: str, sql: str, name: str, build_settings: list[tuple[str, str]],
                on_tick: Callable[[float | None, str], None]) -> dict[str, Any]:
    """Run ``sql`` (a CREATE INDEX) after the ``SET``s; returns build_s, the settings as the server shows
    them, notices, and the index size where the server tells it. Raises what the CREATE INDEX raises.

    While it runs, ``on_tick(fraction or None, phase)`` is called about twice a second from a thread that
    reads ``pg_stat_progress_create_index`` (PostgreSQL; elsewhere only the elapsed time is shown).
    """
    import psycopg

    out: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as c:
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        shown: dict[str, str] = {}
        for key, value in build_settings:
            try:
                c.execute(f"SET {key} = {value}")
                row = c.execute(f"SHOW {key}").fetchone()
                shown[key] = str(row[0]) if row else value
            except psycopg.Error as e:
                shown[key] = f"not set: {error_text(e)}"
        for key in ("max_worker_processes", "max_parallel_workers", "shared_buffers"):
            if key not in shown:
                try:
                    row = c.execute(f"SHOW {key}").fetchone()
                    shown[key] = str(row[0]) if row else ""
                except psycopg.Error:
                    pass
        out["build_settings"] = shown
        stop = threading.Event()
        poller = threading.Thread(target=_poll_progress, args=(dsn, stop, on_tick), daemon=True)
        poller.start()
        t0 = time.perf_counter()
        try:
            c.execute(sql)
        finally:
            out["build_s"] = round(time.perf_counter() - t0, 3)
            stop.set()
            poller.join(5)
        if notices:
            out["notices"] = notices
        try:  # sqlvec: how far the index's per-segment builds are (all built, when CREATE INDEX returns)
            cur = c.execute("SHOW sqlvec.indexes")
            names = [d.name for d in cur.description or []]
            for row in cur.fetchall():
                status = dict(zip(names, row))
                if status.get("index") == name:
                    out["index_status"] = {k: v for k, v in status.items()
                                           if k not in ("table", "index", "method", "opclass", "params")}
                    if status.get("bytes"):
                        out["index_mb"] = round(int(status["bytes"]) / 2**20, 1)
        except psycopg.Error:
            pass
        try:
            row = c.execute("SELECT pg_relation_size(%s::regclass)", [name]).fetchone()
            if row and row[0]:
                out["index_mb"] = round(int(row[0]) / 2**20, 1)
        except psycopg.Error:
            pass
    return out


def _poll_progress(dsn: str, stop: threading.Event, on_tick: Callable[[float | None, str], None]) -> None:
    import psycopg

    conn = None
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.Error:
        conn = None
    try:
        while not stop.wait(0.5):
            fraction, phase = None, ""
            if conn is not None:
                try:
                    row = conn.execute("SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                                       "FROM pg_stat_progress_create_index").fetchone()
                    if row:
                        phase = str(row[0] or "")
                        if row[2]:
                            fraction = row[1] / row[2]
                        elif row[4]:
                            fraction = row[3] / row[4]
                except psycopg.Error:
                    conn.close()
                    conn = None
            on_tick(fraction, phase)
    finally:
        if conn is not None:
            conn.close()


def error_text(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{type(e).__name__}: {text}"


# ------------------------------------------------------------------------------------------------ clients

def encode_binary(vectors: np.ndarray) -> list[bytes]:
    """pgvector's binary form: int16 dim, int16 unused, dim big-endian float4."""
    head = struct.pack(">HH", vectors.shape[1], 0)
    big = vectors.astype(">f4")
    return [head + row.tobytes() for row in big]


class _BinaryVector:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _connect(dsn: str, binary: bool) -> Any:
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class BinaryVectorDumper(Dumper):
        format = Format.BINARY  # oid 0: the server infers vector from the ORDER BY operator

        def dump(self, obj: _BinaryVector) -> bytes:
            return obj.data

    conn = psycopg.connect(dsn, autocommit=True)
    if binary:
        conn.adapters.register_dumper(_BinaryVector, BinaryVectorDumper)
    return conn


def _query_args(p: Any, binary: bool) -> list[Any]:
    """One query's parameters: a single value or a tuple of them; bytes are binary vectors when ``binary``."""
    items = p if isinstance(p, tuple) else (p,)
    return [_BinaryVector(x) if binary and isinstance(x, bytes) else x for x in items]


def _client_main(pipe: multiprocessing.connection.Connection, dsn: str, sql: str, params: Sequence[Any],
                 binary: bool, go: Any, counters: Any, slot: int) -> None:
    """One client process: waits for ("run", settings, indices, warmup, min_time) and answers with its figures:
    the ids of one pass over its queries, then the latency of every query it ran, passes repeated until
    ``min_time`` seconds have gone by."""
    args = [_query_args(p, binary) for p in params]
    while True:
        try:
            msg = pipe.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg[0] != "run":
            return
        _, settings, indices, warmup, min_time = msg
        try:
            with _connect(dsn, binary) as conn:
                cur = conn.cursor()
                for key, value in settings:
                    cur.execute(f"SET {key} = {value}")
                for i in indices[:warmup]:
                    cur.execute(sql, args[i], prepare=True)
                    cur.fetchall()
                pipe.send(("ready",))
                go.wait()
                ids: list[list[int]] = []
                lat: list[float] = []
                t_start = time.perf_counter()
                for i in indices:
                    t0 = time.perf_counter()
                    cur.execute(sql, args[i], prepare=True)
                    rows = cur.fetchall()
                    lat.append(time.perf_counter() - t0)
                    ids.append([r[0] for r in rows])
                    counters[slot] += 1
                t_end = time.perf_counter()
                search = _last_search(conn) if slot == 0 else None
                while t_end - t_start < min_time and indices:  # more passes, timed only
                    for i in indices:
                        t0 = time.perf_counter()
                        cur.execute(sql, args[i], prepare=True)
                        cur.fetchall()
                        t_end = time.perf_counter()
                        lat.append(t_end - t0)
                        counters[slot] += 1
                        if t_end - t_start >= min_time:
                            break
            pipe.send(("done", ids, lat, t_start, t_end, search))
        except KeyboardInterrupt:
            return
        except Exception as e:  # the measurement's error (before or after "ready"); the client stays available
            pipe.send(("error", error_text(e)))


def _last_search(conn: Any) -> str | None:
    """sqlvec's account of how this session's last vector search ran (``SHOW sqlvec.last_search``: index or
    exact, segments); None elsewhere (PostgreSQL has no such setting)."""
    import psycopg

    try:
        row = conn.execute("SHOW sqlvec.last_search").fetchone()
        return str(row[0]) if row and row[0] else None
    except psycopg.Error:
        return None


class ClientPool:
    """``size`` client processes for one server; ``measure`` uses the first ``clients`` of them."""

    def __init__(self, dsn: str, size: int, sql: str, params: Sequence[Any], binary: bool) -> None:
        """``params``: per query, its one parameter (the vector) or a tuple of its parameters."""
        ctx = multiprocessing.get_context("spawn")
        self.go = ctx.Event()
        self.counters = ctx.Array("q", size, lock=False)
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for slot in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(child, dsn, sql, params, binary, self.go, self.counters,
                                                          slot), daemon=True, name=f"sqlvec-bench-client-{slot}")
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.n_queries = len(params)

    def measure(self, clients: int, settings: tuple[tuple[str, str], ...], warmup: int, min_time: float = 0.0,
                on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Run all queries once, split over ``clients`` processes, and go on repeating them until ``min_time``
        seconds have passed. Returns qps (every query run, over the wall time), latencies (s), the ids of the
        first pass per query (None where a client failed) and ``error`` (text) when any client failed."""
        pipes = self.pipes[:clients]
        shares = [list(range(j, self.n_queries, clients)) for j in range(clients)]
        self.go.clear()
        for j in range(clients):
            self.counters[j] = 0
        for pipe, share in zip(pipes, shares):
            pipe.send(("run", settings, share, warmup, min_time))
        errors: list[str] = []
        started = [self._recv(p, on_progress, clients) for p in pipes]
        running = []
        for pipe, msg in zip(pipes, started):
            if msg[0] == "ready":
                running.append(pipe)
            else:
                errors.append(msg[1])
        self.go.set()
        ids: list[list[int] | None] = [None] * self.n_queries
        lat: list[float] = []
        starts, ends = [], []
        result: dict[str, Any] = {"ids": ids, "lat": lat}
        for pipe in running:
            msg = self._recv(pipe, on_progress, clients)
            if msg[0] != "done":
                errors.append(msg[1])
                continue
            _, got, times, t_start, t_end, search = msg
            if search:
                result["search"] = search
            for i, row in zip(shares[pipes.index(pipe)], got):
                ids[i] = row
            lat += times
            starts.append(t_start)
            ends.append(t_end)
        self.go.clear()
        if errors:
            result["error"] = errors[0]
        if starts and not errors:
            result["wall_s"] = max(ends) - min(starts)
            result["qps"] = len(lat) / result["wall_s"] if result["wall_s"] > 0 else float("inf")
        return result

    def _recv(self, pipe: multiprocessing.connection.Connection, on_progress: Callable[[int], None] | None,
              clients: int) -> tuple:
        while True:
            if multiprocessing.connection.wait([pipe], timeout=0.2):
                try:
                    return pipe.recv()
                except EOFError:
                    return ("error", "client process died")
            if on_progress is not None:
                on_progress(sum(self.counters[j] for j in range(clients)))
            idx = self.pipes.index(pipe)
            if not self.procs[idx].is_alive():
                return ("error", f"client process exited with code {self.procs[idx].exitcode}")

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()


def summarise(result: dict[str, Any], truth: np.ndarray) -> dict[str, Any]:
    """qps, p50_ms, p99_ms, recall (mean over queries of |returned & true top k| / k) of one measurement."""
    lat_ms = np.asarray(result["lat"]) * 1000
    k = truth.shape[1]
    hits = [len(set(got) & set(true.tolist())) / k for got, true in zip(result["ids"], truth) if got is not None]
    return {"qps": round(float(result["qps"]), 1), "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 3), "recall": round(float(np.mean(hits)), 4)}


def summarise_sets(result: dict[str, Any], truth: Sequence[Sequence[int]] | np.ndarray) -> dict[str, Any]:
    """Figures of a measurement whose answers may hold fewer (or more) rows than a fixed k (the filtered and
    range phases): qps, p50_ms, p99_ms; recall (mean over queries of |returned & true| / |true|, 1 where
    nothing is true); mean_rows returned; short_frac, the fraction of queries returning fewer rows than the
    true answer has; mean_true_rows."""
    lat_ms = np.asarray(result["lat"]) * 1000
    hits, rows, short, true_rows = [], [], [], []
    for got, true in zip(result["ids"], truth):
        if got is None:
            continue
        want = set(int(t) for t in true)
        hits.append(len(set(got) & want) / len(want) if want else 1.0)
        rows.append(len(got))
        short.append(len(got) < len(want))
        true_rows.append(len(want))
    return {"qps": round(float(result["qps"]), 1), "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 3), "recall": round(float(np.mean(hits)), 4),
            "mean_rows": round(float(np.mean(rows)), 2), "short_frac": round(float(np.mean(short)), 4),
            "mean_true_rows": round(float(np.mean(true_rows)), 2)}
