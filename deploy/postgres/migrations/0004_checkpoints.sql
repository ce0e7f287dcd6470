-- 0004_checkpoints.sql: each node's signed checkpoints of its journal
-- (lib/checkpoint.h), published where every operator and auditor of the
-- fleet can read them, away from the node's own disk: a node whose journal
-- was cut or rewritten cannot take back what it published here.
CREATE TABLE pkid_checkpoints (
  node_id    integer NOT NULL,
  seq        bigint NOT NULL,         -- the last journal record it covers
  signed_at  timestamptz NOT NULL,
  text       text NOT NULL,           -- the checkpoint as signed (pkictl journal verify --checkpoint)
  PRIMARY KEY (node_id, seq)
);
