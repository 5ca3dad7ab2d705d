-- Cursors: DECLARE, FETCH / MOVE in every direction, CLOSE; WITH HOLD; a vector iterator past any top-k.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE docs (id int PRIMARY KEY, kind text, v vector(2));
INSERT INTO docs VALUES
    (1, 'a', '[0,0]'), (2, 'b', '[1,0]'), (3, 'a', '[0,2]'), (4, 'b', '[3,3]'),
    (5, 'a', '[2,1]'), (6, 'b', '[0.5,0.5]'), (7, 'a', '[-1,-1]'), (8, 'b', '[4,0]');

BEGIN;
-- a SCROLL cursor can go back; the default (and NO SCROLL) reads forward only
DECLARE c SCROLL CURSOR FOR SELECT id, kind FROM docs ORDER BY id;
FETCH 3 FROM c;
FETCH PRIOR FROM c;
FETCH ABSOLUTE -1 FROM c;
FETCH BACKWARD 2 FROM c;
MOVE FORWARD ALL IN c;
FETCH RELATIVE -3 FROM c;
CLOSE c;

-- every row nearest first: no LIMIT, each FETCH goes on where the last stopped
DECLARE near CURSOR FOR SELECT id, round((v <-> '[0,0]')::numeric, 3) AS d FROM docs ORDER BY v <-> '[0,0]';
FETCH 3 FROM near;
FETCH 3 FROM near;
FETCH ALL FROM near;

-- with a filter, the iterator passes over the rows it excludes
DECLARE near_b CURSOR FOR SELECT id FROM docs WHERE kind = 'b' ORDER BY v <-> '[0,0]';
FETCH 2 FROM near_b;
COMMIT;

-- WITH HOLD survives COMMIT; its rows are the snapshot of DECLARE, whatever is written after
BEGIN;
DECLARE held CURSOR WITH HOLD FOR SELECT id FROM docs ORDER BY id;
FETCH 2 FROM held;
COMMIT;
DELETE FROM docs WHERE id > 2;
FETCH 3 FROM held;
CLOSE held;
DROP TABLE docs;
