-- 0001_fleet.sql: the fleet's tables. pkid applies every migration of
-- deploy/postgres/migrations/ that the database lacks, in order, each in
-- its own transaction under an advisory lock, and records it in
-- pkid_schema_migrations (server/fleet/fleet.c). Migrations only add:
-- a node still on an older pkid keeps working on a newer schema.

-- Node ids (the serial prefix, --node). A node holds its id while
-- lease_until is ahead; it renews the lease as it runs. Another holder (a
-- node with another journal) may take the id only once the lease has run
-- out, so two live nodes never issue under one prefix.
-- The shipping cursor is here too: the journal records of this node up to
-- shipped_seq are in the tables below, and (shipped_segment,
-- shipped_offset, shipped_chain) say where in the journal the next one
-- starts and what it must link to. It moves in the transaction that
-- inserts the records, so it is exactly what was shipped.
CREATE TABLE pkid_nodes (
  node_id         integer PRIMARY KEY CHECK (node_id BETWEEN 1 AND 32767),
  holder          text NOT NULL,          -- the node's journal (its fleet-holder file)
  host            text NOT NULL,          -- for operators
  version         text NOT NULL,
  started_at      timestamptz NOT NULL,
  renewed_at      timestamptz NOT NULL,
  lease_until     timestamptz NOT NULL,
  journal_seq     bigint NOT NULL DEFAULT 0,  -- the node's durable journal head, last said
  shipped_seq     bigint NOT NULL DEFAULT 0,
  shipped_segment bigint NOT NULL DEFAULT 1,
  shipped_offset  bigint NOT NULL DEFAULT 0,  -- 0: from the first record
  shipped_chain   bytea
);

-- Every certificate any node issued (or imported from the ceremonies),
-- keyed by serial: shipping the same record twice changes nothing.
CREATE TABLE pkid_certificates (
  serial       bytea PRIMARY KEY,
  node_id      integer NOT NULL,           -- the issuer: the serial's node prefix (0: a ceremony)
  journal_seq  bigint NOT NULL,            -- in the journal of the node that shipped it
  ca           text NOT NULL,
  service      text NOT NULL,
  identity     text NOT NULL,              -- who asked
  usage        text NOT NULL,              -- 'server' or 'client'
  not_before   timestamptz NOT NULL,
  not_after    timestamptz NOT NULL,
  key_sha256   bytea NOT NULL,             -- of the subject public key info
  der          bytea NOT NULL,
  issued_at    timestamptz NOT NULL        -- the journal record's time
);
CREATE INDEX pkid_certificates_service_not_after ON pkid_certificates (service, not_after);
CREATE INDEX pkid_certificates_node ON pkid_certificates (node_id);

-- Revocations, one per serial: the first one stands (RFC 5280 5.3.1 has
-- no un-revoking but removeFromCRL, which pkid does not use).
CREATE TABLE pkid_revocations (
  serial          bytea PRIMARY KEY,
  reason          smallint NOT NULL,      -- CRLReason
  revoked_at      timestamptz NOT NULL,
  invalidity_date timestamptz,
  identity        text NOT NULL,          -- who revoked
  node_id         integer NOT NULL,
  journal_seq     bigint NOT NULL
);

-- Bootstrap tokens used (by id, the token's SHA-256).
CREATE TABLE pkid_tokens (
  id        bytea PRIMARY KEY,
  node_id   integer NOT NULL,
  used_at   timestamptz NOT NULL
);
