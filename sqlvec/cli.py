"""The ``sqlvec`` command.

Examples::

    sqlvec serve                                   # 127.0.0.1:5433, data in ./data, trust auth
    sqlvec serve --port 6543 --data /var/lib/sqlvec --password s3cret
    SQLVEC_PORT=6543 SQLVEC_DATA=/tmp/sv sqlvec serve
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name, default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sqlvec",
        description="A vector database that speaks PostgreSQL and pgvector SQL.",
        epilog="Example: sqlvec serve --port 5433 --data ./data, then psql -h 127.0.0.1 -p 5433 -U postgres sqlvec",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="run the server",
        description="Serve the PostgreSQL protocol over a data directory.",
        epilog="Example: sqlvec serve --host 127.0.0.1 --port 5433 --data ./data --password s3cret",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--host", default=_env("SQLVEC_HOST", "127.0.0.1"), help="address to listen on (env SQLVEC_HOST)")
    s.add_argument("--port", type=int, default=int(_env("SQLVEC_PORT", "5433") or 5433),
                   help="TCP port; 0 picks a free one (env SQLVEC_PORT)")
    s.add_argument("--data", default=_env("SQLVEC_DATA", "./data"), help="data directory (env SQLVEC_DATA)")
    s.add_argument("--password", default=_env("SQLVEC_PASSWORD", None),
                   help="require SCRAM-SHA-256 with this password; without it, trust (env SQLVEC_PASSWORD)")
    s.add_argument("--seal-rows", type=int, default=int(_env("SQLVEC_SEAL_ROWS", "1000000") or 1000000),
                   help="rows per sealed segment (env SQLVEC_SEAL_ROWS)")
    s.add_argument("--growing-index-rows", type=int,
                   default=int(_env("SQLVEC_GROWING_INDEX_ROWS", "10000") or 10000),
                   help="rows in the growing (unsealed) segment from which vector indexes also index it "
                        "(env SQLVEC_GROWING_INDEX_ROWS)")
    s.add_argument("--compaction-ratio", type=float,
                   default=float(_env("SQLVEC_COMPACTION_RATIO", "0.2") or 0.2),
                   help="fraction of a sealed segment's rows deleted past which background compaction "
                        "rewrites it (small segments are merged anyway) (env SQLVEC_COMPACTION_RATIO)")
    s.add_argument("--compaction-interval", type=float,
                   default=float(_env("SQLVEC_COMPACTION_INTERVAL", "10") or 10),
                   help="seconds between background compaction passes (also after checkpoints); 0 turns it "
                        "off, VACUUM still compacts (env SQLVEC_COMPACTION_INTERVAL)")
    s.add_argument("--stage-bytes", type=int,
                   default=int(_env("SQLVEC_STAGE_BYTES", str(32 << 20)) or 0),
                   help="size of decoded rows from which a COPY outside a transaction block writes them to a "
                        "staged file beside the WAL as they arrive, so that its commit logs the file's name "
                        "rather than the rows; 0 never (env SQLVEC_STAGE_BYTES)")
    s.add_argument("--no-fsync", action="store_true", default=_env("SQLVEC_NO_FSYNC", "") == "1",
                   help="do not fsync the WAL (unsafe: for benchmarks of the rest) (env SQLVEC_NO_FSYNC=1)")
    s.add_argument("--log-level", default=_env("SQLVEC_LOG_LEVEL", "INFO"),
                   help="DEBUG, INFO, WARNING (env SQLVEC_LOG_LEVEL)")
    from sqlvec import bench

    b = sub.add_parser(
        "bench",
        help="measure ingest, index builds and approximate search (recall vs QPS) over the wire",
        description=bench.__doc__,
        epilog="Example: sqlvec bench --rows 100000 --dim 128   (starts its own server)\n"
               "         sqlvec bench --rows 100000 --dim 128 --peer pgserver   (and PostgreSQL + pgvector)\n"
               "         sqlvec bench --rows 20000 --dim 64 --queries 300 --peer pgserver \\\n"
               "             --phases copy,index,sweep,exact_topk --indexes 'hnsw:m=16,ef_construction=64 "
               "ivfflat:lists=141'\n"
               "         sqlvec bench --dsn 'host=127.0.0.1 port=5432 user=postgres dbname=postgres'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(b)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return serve(args)
    if args.command == "bench":
        from sqlvec import bench

        return bench.main_with_local_server(args)
    return 2


def serve(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from sqlvec.engine import Engine
    from storage import Store
    from wire import server as wire_server
    from wire.server import WireServer

    log = logging.getLogger("sqlvec")
    # One query's exact search is a matrix-vector product per segment: BLAS threads gain nothing there,
    # and with concurrent queries and the segment fan-out they oversubscribe the cores (measured on 2
    # cores: exact QPS swung from 740 to 100 with BLAS threading, 4 clients fell to 50-90 QPS with p99
    # over 200 ms; steady 850-890 with one BLAS thread). Parallelism comes from the fan-out over
    # segments and from concurrent sessions instead; faiss's OpenMP (index builds) is not limited.
    threadpool_limits(limits=1, user_api="blas")
    store = Store.open(args.data, seal_rows=args.seal_rows, fsync=not args.no_fsync,
                       growing_index_rows=args.growing_index_rows, compaction_ratio=args.compaction_ratio,
                       compaction_interval=args.compaction_interval, background_checkpoints=True,
                       stage_bytes=args.stage_bytes)
    engine = Engine(store)

    async def run() -> None:
        wire = WireServer(engine, password=args.password)
        server = await wire.start(args.host, args.port)
        port = server.sockets[0].getsockname()[1]
        log.info("sqlvec listening on %s:%d, data in %s, auth %s", args.host, port, os.path.abspath(args.data),
                 "scram-sha-256" if args.password else "trust")
        print(f"sqlvec ready on {args.host}:{port}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        engine.cancel_all()  # running statements end with 57014 instead of holding up the exit
        try:
            await asyncio.wait_for(wire.close(), 10)  # stops listening, ends connections, closes sessions
        except TimeoutError:
            log.warning("connections did not close within 10 s; exiting anyway")

    try:
        wire_server.run(run())  # uvloop where installed (SQLVEC_UVLOOP=0: asyncio)
    finally:
        store.close()
        log.info("sqlvec stopped")
        logging.shutdown()
    # Every commit is durable in the WAL by now; do not wait for worker threads still inside a
    # cancelled statement (Python would join them at exit).
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
