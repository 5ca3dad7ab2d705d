"""The PostgreSQL v3 wire protocol for sqlvec, over asyncio.

Modules: ``session`` (the interface the engine implements), ``server`` (connections, the
protocol state machine, ``start_server`` / ``WireServer``), ``codec`` (message framing, no I/O),
``pgtypes`` (type OIDs, Bind parameter decoding), ``column_encoding`` (vectorised result
encoding and DataRow batches), ``copy_text`` (COPY FROM STDIN text format -> Arrow), ``auth``
(SCRAM-SHA-256). Nothing is imported here, so ``import wire.session`` stays light.
"""
