-- Filtered vector search over scalar, JSON and array conditions: always min(k, matching rows) rows.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE docs (id int PRIMARY KEY, lang text, year int, meta jsonb, tags text[], scores int[],
                   embedding vector(2));
INSERT INTO docs VALUES
    (1, 'en', 2021, '{"source": "web", "labels": ["news", "tech"], "stars": 4}', '{news,tech}', '{4,5}', '[0,0]'),
    (2, 'de', 2022, '{"source": "pdf", "labels": ["tech"], "stars": 2}',         '{tech}',      '{2}',   '[1,0]'),
    (3, 'en', 2023, '{"source": "web", "labels": [], "stars": 5}',               '{}',          '{}',    '[0,2]'),
    (4, 'fr', 2023, '{"source": "web", "labels": ["sport"]}',                    '{sport,"a b"}', '{1,NULL}', '[3,3]'),
    (5, 'en', 2024, NULL,                                                        NULL,          NULL,    '[0.5,0.5]');

-- scalar predicates of every kind combine with ORDER BY distance LIMIT k
SELECT id FROM docs WHERE lang = 'en' AND year BETWEEN 2021 AND 2023 ORDER BY embedding <-> '[0,0]' LIMIT 3;
SELECT id FROM docs WHERE lang IN ('de', 'fr') OR year % 2 = 0 ORDER BY embedding <=> '[1,1]' LIMIT 3;
SELECT id FROM docs WHERE lang ILIKE 'E%' AND NOT (year > 2023) ORDER BY embedding <#> '[1,1]' LIMIT 10;
-- a filter that matches nothing: zero rows, not an error
SELECT id FROM docs WHERE year > 3000 ORDER BY embedding <-> '[0,0]' LIMIT 5;

-- jsonb: paths, containment, key existence
SELECT id, meta ->> 'source' AS source, meta -> 'labels' -> 0 AS first_label FROM docs ORDER BY id;
SELECT id FROM docs WHERE meta @> '{"source": "web"}' ORDER BY embedding <-> '[0,0]' LIMIT 2;
SELECT id FROM docs WHERE meta ? 'stars' AND (meta ->> 'stars')::int >= 4 ORDER BY id;
SELECT id, jsonb_array_length(meta -> 'labels') AS n, jsonb_typeof(meta -> 'stars') AS t FROM docs ORDER BY id;
-- Milvus's JSON helpers
SELECT id FROM docs WHERE json_contains(meta -> 'labels', '"tech"') ORDER BY id;
SELECT id FROM docs WHERE json_contains_any(meta -> 'labels', '["sport", "news"]') ORDER BY id;

-- arrays: = ANY, @>, &&, subscripts, lengths, text form
SELECT id FROM docs WHERE 'tech' = ANY(tags) ORDER BY embedding <-> '[0,0]' LIMIT 5;
SELECT id FROM docs WHERE tags @> '{news,tech}' OR scores && '{1,2}' ORDER BY id;
SELECT id, tags[1] AS first, scores[1:1] AS head, array_length(tags, 1) AS len, cardinality(tags) AS card,
       tags::text AS tags_text FROM docs ORDER BY id;
-- PostgreSQL's NULL logic: 3 = ANY('{1,NULL}') is NULL, not false
SELECT id, 3 = ANY(scores) AS has_3 FROM docs ORDER BY id;

-- how a filtered search runs: below sqlvec.exact_below matching rows a segment is searched exactly,
-- otherwise through its index with the filter as an allow-list
CHECKPOINT;
CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops);
SET sqlvec.exact_below = 0;
EXPLAIN SELECT id FROM docs WHERE lang = 'en' ORDER BY embedding <-> '[0,0]' LIMIT 2;
SELECT id FROM docs WHERE lang = 'en' ORDER BY embedding <-> '[0,0]' LIMIT 2;
SHOW sqlvec.last_search;
RESET sqlvec.exact_below;
EXPLAIN SELECT id FROM docs WHERE lang = 'en' ORDER BY embedding <-> '[0,0]' LIMIT 2;
SELECT id FROM docs WHERE lang = 'en' ORDER BY embedding <-> '[0,0]' LIMIT 2;
SHOW sqlvec.last_search;

-- errors name what is wrong
SELECT id FROM docs WHERE no_such_column = 1 ORDER BY embedding <-> '[0,0]' LIMIT 1;
INSERT INTO docs (id, scores) VALUES (9, '{1,x}');
DROP TABLE docs;
