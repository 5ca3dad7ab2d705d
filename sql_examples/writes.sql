-- UPDATE, upsert (INSERT ... ON CONFLICT), DELETE, TRUNCATE and savepoints.
CREATE TABLE docs (id int PRIMARY KEY, tag text, hits int NOT NULL DEFAULT 0, embedding vector(3));
INSERT INTO docs VALUES (1, 'a', 0, '[1,0,0]'), (2, 'b', 0, '[0,1,0]'), (3, 'c', 0, '[0,0,1]');

-- re-embed a document; the index and the search see the new vector at once
UPDATE docs SET embedding = '[0.9,0.1,0]', tag = upper(tag) WHERE id = 3 RETURNING id, tag, embedding;
SELECT id FROM docs ORDER BY embedding <-> '[1,0,0]' LIMIT 2;

-- upsert: existing keys are updated (EXCLUDED is the proposed row), new keys inserted
INSERT INTO docs AS d (id, tag, embedding) VALUES (2, 'b2', '[0,1,1]'), (4, 'd', '[1,1,1]')
  ON CONFLICT (id) DO UPDATE SET tag = EXCLUDED.tag, embedding = EXCLUDED.embedding, hits = d.hits + 1
  RETURNING id, tag, hits;
-- the WHERE of DO UPDATE can leave a row as it is; DO NOTHING skips conflicts
INSERT INTO docs AS d (id, tag) VALUES (1, 'nope') ON CONFLICT (id) DO UPDATE SET tag = EXCLUDED.tag
  WHERE d.hits > 0;
INSERT INTO docs (id, tag) VALUES (1, 'nope'), (5, 'e') ON CONFLICT DO NOTHING;
SELECT id, tag, hits, embedding FROM docs ORDER BY id;
SELECT count(*) FROM docs;

-- errors PostgreSQL gives too: a key proposed twice, an unqualified column in SET
INSERT INTO docs (id) VALUES (6), (6) ON CONFLICT (id) DO UPDATE SET hits = 1;
INSERT INTO docs (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET hits = hits + 1;
-- a failing UPDATE changes nothing
UPDATE docs SET embedding = '[1,2]' WHERE id = 1;

-- savepoints undo part of a transaction
BEGIN;
UPDATE docs SET hits = 100 WHERE id = 1;
SAVEPOINT before_delete;
DELETE FROM docs WHERE id > 1;
SELECT count(*) FROM docs;
ROLLBACK TO SAVEPOINT before_delete;
COMMIT;
SELECT id, hits FROM docs ORDER BY id;

DELETE FROM docs WHERE id = ANY('{4,5}') RETURNING id;
TRUNCATE docs;
SELECT count(*) FROM docs;
DROP TABLE docs;
