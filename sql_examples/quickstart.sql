-- The README's quick start: a vector table, rows, and nearest-neighbour queries.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    embedding vector(3)
);

INSERT INTO items (name, embedding) VALUES
    ('apple',  '[1,0,0]'),
    ('banana', '[0.9,0.1,0]'),
    ('cherry', '[0,1,0]'),
    ('date',   '[0,0,1]'),
    ('nothing', NULL);

SELECT count(*) FROM items;

-- the three nearest to [1,0,0] by Euclidean distance
SELECT id, name, embedding <-> '[1,0,0]' AS distance FROM items ORDER BY distance LIMIT 3;

-- cosine distance, inner product and L1 distance
SELECT name, embedding <=> '[1,1,0]' AS cosine FROM items ORDER BY embedding <=> '[1,1,0]' LIMIT 2;
SELECT name, embedding <#> '[1,1,0]' AS negative_inner_product FROM items ORDER BY 2 LIMIT 2;
SELECT name, embedding <+> '[1,1,0]' AS l1 FROM items ORDER BY l1 LIMIT 2;

-- filters combine with vector order
SELECT name FROM items WHERE name <> 'apple' ORDER BY embedding <-> '[1,0,0]' LIMIT 1;

-- errors name what is wrong and change nothing
INSERT INTO items (name, embedding) VALUES ('bad', '[1,2]');
SELECT count(*) FROM items;

DELETE FROM items WHERE name = 'nothing';
SELECT name, embedding FROM items ORDER BY id;
DROP TABLE items;
