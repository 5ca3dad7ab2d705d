-- Vector indexes: HNSW and IVF with pgvector's syntax, search settings, and how a query ran.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE docs (id int PRIMARY KEY, topic text, embedding vector(3));

-- 3,000 points on a spiral, three topics
INSERT INTO docs
SELECT i, 'topic ' || (i % 3),
       ('[' || cos(i / 100.0) || ',' || sin(i / 100.0) || ',' || (i / 3000.0) || ']')::vector
FROM generate_series(1, 3000) AS g(i);

-- seal the in-memory rows into a segment file, so the index is built over it
CHECKPOINT;

-- pgvector's HNSW: returns once the index is built
CREATE INDEX docs_hnsw ON docs USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction = 64);
SHOW sqlvec.indexes;

SET hnsw.ef_search = 100;
SELECT id, topic, round((embedding <-> '[1,0,0.5]')::numeric, 4) AS distance
FROM docs ORDER BY embedding <-> '[1,0,0.5]' LIMIT 5;
SHOW sqlvec.last_search;

-- a filter is applied inside the index search (as an allow-list), not after it
SELECT id, topic FROM docs WHERE topic = 'topic 1' ORDER BY embedding <-> '[1,0,0.5]' LIMIT 3;

-- the index serves only its own operator: cosine distance is searched exactly
SELECT id FROM docs ORDER BY embedding <=> '[1,0,0.5]' LIMIT 3;
SHOW sqlvec.last_search;

-- IVF with 20 lists; probes is the recall/speed dial
CREATE INDEX docs_ivf ON docs USING ivfflat (embedding vector_cosine_ops) WITH (lists = 20);
SET ivfflat.probes = 20;
SELECT id FROM docs ORDER BY embedding <=> '[1,0,0.5]' LIMIT 3;
SHOW sqlvec.last_search;

-- bad parameters are refused and change nothing
CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops) WITH (m = 0);
CREATE INDEX ON docs USING hnsw (embedding vector_jaccard_ops);
SET hnsw.ef_search = -1;
SHOW hnsw.ef_search;

DROP INDEX docs_hnsw, docs_ivf;
SHOW sqlvec.indexes;
DROP TABLE docs;
