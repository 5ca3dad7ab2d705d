-- Bulk loading with psql's \copy (COPY ... FROM STDIN underneath), and transactions.
CREATE TABLE fruit (id int PRIMARY KEY, name text NOT NULL, embedding vector(3));
\copy fruit FROM 'copy_items.tsv'
SELECT count(*) FROM fruit;
SELECT id, name FROM fruit ORDER BY embedding <=> '[1,0.2,0]' LIMIT 2;

-- a transaction sees its own writes; ROLLBACK discards them
BEGIN;
INSERT INTO fruit VALUES (5, 'date', '[0,0,1]');
SELECT count(*) FROM fruit;
ROLLBACK;
SELECT count(*) FROM fruit;

-- an error inside a transaction block fails it until ROLLBACK, as in PostgreSQL
BEGIN;
INSERT INTO fruit VALUES (1, 'duplicate', '[0,0,1]');
SELECT 1;
ROLLBACK;

-- a bad row anywhere in a COPY loads nothing
\copy fruit FROM 'copy_items.tsv'
SELECT count(*) FROM fruit;
DROP TABLE fruit;
