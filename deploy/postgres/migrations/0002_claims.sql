-- 0002_claims.sql: revocations and bootstrap tokens claimed in PostgreSQL
-- before the node that takes them journals them (server/fleet/fleet.h,
-- pkid_fleet_claim), so a token is single-use across the fleet and a
-- revocation is the fleet's before it is acknowledged.
--
-- A claimed revocation has no journal position until its node ships the
-- journal record (which then fills journal_seq in): NULL means "claimed,
-- not yet shipped". A node that journaled nothing after its claim (its
-- disk failed) leaves the row NULL; the revocation stands all the same.
ALTER TABLE pkid_revocations ALTER COLUMN journal_seq DROP NOT NULL;

-- When the claim was made, beside the token's journal time: the two differ
-- by the commit's fdatasync, or the token was burnt by a failed commit.
ALTER TABLE pkid_tokens ADD COLUMN claimed_at timestamptz;
