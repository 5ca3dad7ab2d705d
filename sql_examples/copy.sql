-- COPY in text, CSV and binary: load from STDIN, export to STDOUT (psql's \copy uses the same).
CREATE TABLE docs (id int PRIMARY KEY, tag text, score float8, embedding vector(3));

-- CSV with a header line, a NULL marker and a semicolon delimiter; quoted fields keep ; and newlines
COPY docs FROM STDIN (FORMAT csv, HEADER true, NULL 'NA', DELIMITER ';');
id;tag;score;embedding
1;"news;sport";0.5;[1,0,0]
2;NA;NA;[0,1,0]
3;"two
lines";1.25;[0,0,1]
\.
SELECT id, tag, score, embedding FROM docs ORDER BY id;

-- text format: tab-separated, \N for NULL, backslash escapes
COPY docs FROM STDIN;
4	tab\there	2	[1,1,0]
5	\N	\N	\N
\.
SELECT count(*) FROM docs;

-- export: a table in text and CSV, a query's nearest neighbours as CSV with a header
COPY docs (id, tag) TO STDOUT;
COPY docs TO STDOUT (FORMAT csv, FORCE_QUOTE (tag));
COPY (SELECT id, embedding <-> '[1,0,0]' AS distance FROM docs WHERE embedding IS NOT NULL
      ORDER BY distance LIMIT 2) TO STDOUT WITH CSV HEADER;

-- a bad row anywhere fails the whole COPY; its line and column are in the CONTEXT
COPY docs FROM STDIN (FORMAT csv);
6,ok,1,"[1,2,3]"
7,bad,oops,"[1,2,3]"
\.
SELECT count(*) FROM docs;

-- options are checked as PostgreSQL checks them
COPY docs FROM STDIN (FORMAT xml);
COPY docs FROM STDIN (FORMAT binary, NULL 'x');
DROP TABLE docs;
