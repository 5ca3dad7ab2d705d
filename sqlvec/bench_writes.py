"""The write phases of ``sqlvec bench`` (``--phases writes`` runs them all), on their own table
``bench_writes`` (id bigint PRIMARY KEY, embedding vector(dim), bucket int), in this order:

  copy_binary        COPY ... FROM STDIN (FORMAT binary) of every row, the stream built with numpy before the
                     clock starts; rows/s
  upsert_batch       with an HNSW index (m=16, ef_construction=64) on the table (its build time is reported),
                     --upsert-rows upserts of existing keys, each a new embedding, pipelined by executemany in
                     batches of 1,000 inside one transaction, COMMIT included; rows/s
  upsert_autocommit  --autocommit-rows upserts of existing keys, one statement per row, each its own
                     autocommit transaction (a round trip and a durable commit each); rows/s
  count              SELECT count(*) 50 times after the upserts: p50 ms, next to SELECT 1's p50 (the round trip
                     alone), and whether the count is exact
  updated            20% of the rows get new embeddings (COPY into a staging table, one UPDATE ... FROM; rows/s),
                     then the index's recall@10 and one-client QPS at hnsw.ef_search=40 against the exact top 10
                     of the updated data, next to the same figures measured before the update, and again
                     after VACUUM (sqlvec: compaction, the old versions dropped and the index rebuilt)

Upserted and updated rows take the embedding of another row (row ``(id + rows / 2) % rows``), so the data keeps
its distribution and the ground truth stays computable. Every upsert is ``INSERT ... ON CONFLICT (id) DO
UPDATE SET embedding = EXCLUDED.embedding, bucket = EXCLUDED.bucket``.
"""

from __future__ import annotations

import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sqlvec import bench_data, bench_report

PHASES = ("copy_binary", "upsert_batch", "upsert_autocommit", "count", "updated")
TABLE = "bench_writes"
STAGE = "bench_writes_stage"
UPSERT = (f"INSERT INTO {TABLE} (id, embedding, bucket) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
          "SET embedding = EXCLUDED.embedding, bucket = EXCLUDED.bucket")
EF_SEARCH = 40
K = 10


def binary_stream(ids: np.ndarray, vectors: np.ndarray, buckets: np.ndarray) -> bytes:
    """COPY BINARY of (id bigint, embedding vector, bucket int): one structured numpy record per tuple."""
    n, dim = vectors.shape
    tuple_type = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("e_len", ">i4"), ("dim", ">i2"),
                           ("unused", ">i2"), ("e", ">f4", (dim,)), ("b_len", ">i4"), ("bucket", ">i4")])
    rows = np.zeros(n, tuple_type)
    rows["fields"], rows["id_len"], rows["e_len"], rows["b_len"] = 3, 8, 4 + 4 * dim, 4
    rows["id"], rows["dim"], rows["e"], rows["bucket"] = ids, dim, vectors, buckets
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)


def _copy(c: Any, table: str, data: bytes) -> float:
    t0 = time.perf_counter()
    with c.cursor().copy(f"COPY {table} (id, embedding, bucket) FROM STDIN (FORMAT binary)") as cp:
        step = 1 << 22
        for start in range(0, len(data), step):
            cp.write(data[start: start + step])
    return time.perf_counter() - t0


def _recall(c: Any, work: bench_data.Workload, truth: np.ndarray, op: str) -> tuple[float, float]:
    """(recall@10, queries/s) of one client over every query, prepared, at hnsw.ef_search = EF_SEARCH."""
    c.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    found = []
    t0 = time.perf_counter()
    with c.cursor() as cur:
        for q in work.query_texts:
            cur.execute(f"SELECT id FROM {TABLE} ORDER BY embedding {op} %s LIMIT {K}", (q,), prepare=True)
            found.append([r[0] for r in cur.fetchall()])
    elapsed = time.perf_counter() - t0
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / max(1, truth.size), 4), round(len(found) / elapsed, 1)


def run(args: Any, c: Any, work: bench_data.Workload, label: dict, op: str, opclass: str,
        emit: Callable[[dict], None]) -> None:
    """The write phases asked for in ``args.phases`` against the autocommit connection ``c``."""
    phases = set(args.phases)
    rows = work.rows
    ids = np.arange(rows, dtype=np.int64)
    other = (ids + rows // 2) % rows  # the row whose embedding an upserted / updated row takes
    c.execute(f"DROP TABLE IF EXISTS {TABLE}")
    c.execute(f"DROP TABLE IF EXISTS {STAGE}")
    c.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector({work.dim}), bucket int)")
    try:
        bar = bench_report.Progress(f"{label['system']}: copy_binary", None)
        seconds = _copy(c, TABLE, binary_stream(ids, work.vectors, work.buckets))
        bar.finish(f"{rows} rows")
        if "copy_binary" in phases:
            emit({**label, "phase": "copy_binary", "rows_per_s": round(rows / seconds), "seconds": round(seconds, 3)})
        if not phases & set(PHASES[1:]):
            return  # nothing needs the HNSW index (hours for pgvector at 1M rows on 2 cores)
        c.execute("CHECKPOINT")
        current = work.vectors.copy()
        t0 = time.perf_counter()
        c.execute(f"CREATE INDEX bench_writes_hnsw ON {TABLE} USING hnsw (embedding {opclass}) "
                  "WITH (m = 16, ef_construction = 64)")
        index_s = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed)
        picked = rng.permutation(rows)
        n_batch = min(rows, args.upsert_rows)
        n_auto = min(rows - n_batch, args.autocommit_rows)
        texts = work.texts
        buckets = work.buckets.tolist()

        if "upsert_batch" in phases:
            keys = picked[:n_batch].tolist()
            bar = bench_report.Progress(f"{label['system']}: upsert_batch", n_batch, " rows")
            t0 = time.perf_counter()
            with c.transaction(), c.cursor() as cur:
                for start in range(0, n_batch, 1000):
                    chunk = keys[start: start + 1000]
                    cur.executemany(UPSERT, [(k, texts[other[k]], buckets[other[k]]) for k in chunk])
                    bar.update(start + len(chunk))
            seconds = time.perf_counter() - t0
            bar.finish()
            current[keys] = work.vectors[other[keys]]
            emit({**label, "phase": "upsert_batch", "index_build_s": round(index_s, 3), "upserts": n_batch,
                  "rows_per_s": round(n_batch / seconds), "seconds": round(seconds, 3)})
        if "upsert_autocommit" in phases:
            keys = picked[n_batch: n_batch + n_auto].tolist()
            bar = bench_report.Progress(f"{label['system']}: upsert_autocommit", n_auto, " rows")
            t0 = time.perf_counter()
            with c.cursor() as cur:
                for i, k in enumerate(keys):
                    cur.execute(UPSERT, (k, texts[other[k]], buckets[other[k]]), prepare=True)
                    if i % 100 == 0:
                        bar.update(i)
            seconds = time.perf_counter() - t0
            bar.finish()
            current[keys] = work.vectors[other[keys]]
            emit({**label, "phase": "upsert_autocommit", "upserts": n_auto, "rows_per_s": round(n_auto / seconds),
                  "seconds": round(seconds, 3)})
        if "count" in phases:
            def p50(sql: str) -> tuple[float, Any]:
                times, value = [], None
                for _ in range(50):
                    t0 = time.perf_counter()
                    value = c.execute(sql).fetchone()[0]
                    times.append(time.perf_counter() - t0)
                return round(statistics.median(times) * 1000, 3), value
            count_ms, counted = p50(f"SELECT count(*) FROM {TABLE}")
            select1_ms, _ = p50("SELECT 1")
            emit({**label, "phase": "count", "count_p50_ms": count_ms, "select1_p50_ms": select1_ms,
                  "exact": counted == rows})
        if "updated" in phases:
            before = bench_data.ground_truth(current, work.queries, work.metric, K)
            recall_before, qps_before = _recall(c, work, before, op)
            keys = np.sort(picked[: rows // 5])
            c.execute(f"CREATE TABLE {STAGE} (id bigint PRIMARY KEY, embedding vector({work.dim}), bucket int)")
            # the new embedding of each: the one it does not have now (its own, if an upsert moved it away)
            fresh = np.where(np.all(current[keys] == work.vectors[keys], axis=1)[:, None],
                             work.vectors[other[keys]], work.vectors[keys])
            _copy(c, STAGE, binary_stream(keys, fresh, work.buckets[keys]))
            t0 = time.perf_counter()
            c.execute(f"UPDATE {TABLE} SET embedding = s.embedding FROM {STAGE} s WHERE {TABLE}.id = s.id")
            seconds = time.perf_counter() - t0
            current[keys] = fresh
            after = bench_data.ground_truth(current, work.queries, work.metric, K)
            recall_after, qps_after = _recall(c, work, after, op)
            c.execute(f"DROP TABLE {STAGE}")
            t0 = time.perf_counter()
            c.execute(f"VACUUM {TABLE}")  # sqlvec: compaction (and the new segment's index); PostgreSQL: vacuum
            vacuum_s = time.perf_counter() - t0
            recall_vacuumed, qps_vacuumed = _recall(c, work, after, op)
            emit({**label, "phase": "updated", "updated_rows": int(keys.size),
                  "update_rows_per_s": round(keys.size / seconds),
                  "setting": f"hnsw.ef_search={EF_SEARCH}", "recall_before": recall_before,
                  "recall_after": recall_after, "qps_before": qps_before, "qps_after": qps_after,
                  "vacuum_s": round(vacuum_s, 3), "recall_after_vacuum": recall_vacuumed,
                  "qps_after_vacuum": qps_vacuumed})
    finally:
        for t in (STAGE, TABLE):
            c.execute(f"DROP TABLE IF EXISTS {t}")
