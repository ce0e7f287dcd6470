-- 0003_follow.sql: one order of the fleet's changes, so every node can
-- follow what the others issue and revoke (server/fleet/follow.h).
--
-- Each certificate and revocation row gets fleet_seq from one sequence,
-- assigned by a trigger that first takes a transaction-scoped advisory
-- lock held to commit: writers of these tables (the nodes' shippers and
-- their revocation claims) commit one after another, so fleet_seq values
-- become visible in increasing order and a node that has read every row
-- up to N can never later find a committed row below N. A follower
-- therefore keeps one number as its cursor. The trigger also notifies
-- pkid_fleet (delivered at commit, once per transaction), which followers
-- LISTEN to; they poll too, in case a notification is lost with a
-- connection.
CREATE SEQUENCE pkid_fleet_seq;

ALTER TABLE pkid_certificates ADD COLUMN fleet_seq bigint;
ALTER TABLE pkid_revocations ADD COLUMN fleet_seq bigint;
UPDATE pkid_certificates SET fleet_seq = nextval('pkid_fleet_seq');
UPDATE pkid_revocations SET fleet_seq = nextval('pkid_fleet_seq');
ALTER TABLE pkid_certificates ALTER COLUMN fleet_seq SET NOT NULL;
ALTER TABLE pkid_revocations ALTER COLUMN fleet_seq SET NOT NULL;
CREATE UNIQUE INDEX pkid_certificates_fleet_seq ON pkid_certificates (fleet_seq);
CREATE UNIQUE INDEX pkid_revocations_fleet_seq ON pkid_revocations (fleet_seq);

-- 0x706b6966: "pkif", beside the migrations' "pkid".
CREATE FUNCTION pkid_fleet_seq_assign() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(1886087526);
  NEW.fleet_seq := nextval('pkid_fleet_seq');
  PERFORM pg_notify('pkid_fleet', '');
  RETURN NEW;
END
$$;

CREATE TRIGGER pkid_certificates_fleet_seq BEFORE INSERT ON pkid_certificates
  FOR EACH ROW EXECUTE FUNCTION pkid_fleet_seq_assign();
CREATE TRIGGER pkid_revocations_fleet_seq BEFORE INSERT ON pkid_revocations
  FOR EACH ROW EXECUTE FUNCTION pkid_fleet_seq_assign();
