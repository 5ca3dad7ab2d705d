-- Range search: every row within a distance, with plain comparisons or sqlvec's WITHIN shorthand.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE points (id int PRIMARY KEY, kind text, v vector(2));
INSERT INTO points VALUES
    (1, 'a', '[0,0]'), (2, 'b', '[1,0]'), (3, 'a', '[0,2]'), (4, 'b', '[3,3]'),
    (5, 'a', NULL), (6, 'b', '[0.5,0.5]'), (7, 'a', '[-1,-1]');

-- every point closer than 1.5 to the origin, nearest first (a NULL vector has no distance: never inside)
SELECT id, round((v <-> '[0,0]')::numeric, 3) AS distance FROM points WHERE v <-> '[0,0]' < 1.5;

-- the same with WITHIN, and a band lo <= distance < hi combined with another condition
SELECT id FROM points WHERE v <-> '[0,0]' WITHIN 1.5;
SELECT id, kind FROM points WHERE v <-> '[0,0]' WITHIN 0.5 TO 2.5 AND kind = 'a';

-- BETWEEN, the bound on either side, and any ORDER BY / LIMIT over the rows found
SELECT id FROM points WHERE v <-> '[0,0]' BETWEEN 1 AND 2 ORDER BY id DESC;
SELECT id FROM points WHERE 2 >= v <-> '[0,0]' ORDER BY kind, id LIMIT 3;

-- cosine and inner product: <#> is the negative inner product, so WITHIN bounds it from above
SELECT id FROM points WHERE v <=> '[1,1]' WITHIN 0.2;
SELECT id, v <#> '[1,1]' AS neg_ip FROM points WHERE v <#> '[1,1]' WITHIN -10 TO -0.5;

-- with an index the range is searched through it (CHECKPOINT seals the rows into an indexed segment)
CHECKPOINT;
CREATE INDEX ON points USING hnsw (v vector_l2_ops);
SELECT id FROM points WHERE v <-> '[0,0]' WITHIN 1.5;
SHOW sqlvec.last_search;
DROP TABLE points;
