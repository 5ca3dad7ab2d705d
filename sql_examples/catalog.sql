-- pg_catalog: psql's backslash commands and the catalog queries drivers and tools run.
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS catalog_docs;
CREATE TABLE catalog_docs (id bigint PRIMARY KEY, embedding vector(3), lang text DEFAULT 'en' NOT NULL);
CREATE INDEX catalog_docs_hnsw ON catalog_docs USING hnsw (embedding vector_cosine_ops);

\d catalog_docs

-- What psycopg's and pgvector's type registration asks.
SELECT typname, oid, typarray, oid::regtype::text AS regtype FROM pg_type WHERE oid = to_regtype('vector');

-- Columns with their declared types, as ORMs reflect them.
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = 'catalog_docs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- Indexes with their access method and definition.
SELECT c.relname, am.amname, pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
WHERE i.indrelid = 'catalog_docs'::regclass ORDER BY 1;

DROP TABLE catalog_docs;
