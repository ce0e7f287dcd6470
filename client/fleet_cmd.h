/* fleet_cmd.h: `pkictl fleet status` and `pkictl inventory`, an operator's
 * view of the fleet's PostgreSQL (the schema of deploy/postgres/, which
 * the pkid nodes fill).
 *
 *   pkictl fleet status --postgres CONNINFO [--json]
 *   pkictl inventory --postgres CONNINFO [--service S] [--expiring-within 7d]
 *       [--node N] [--revoked | --valid] [--json]
 *
 * fleet status: a row per node id, from pkid_nodes (host, holder, version,
 * start, the lease left or "expired", journal_seq, shipped_seq and the lag
 * between them), with the certificates that node issued (pkid_certificates)
 * and how many of those are revoked (pkid_revocations). A node id that
 * has certificates but no pkid_nodes row is listed too, with "-".
 *
 * inventory: certificates, ordered by not_after: serial (hex), service,
 * usage, CA, not_after, issuing node, state (valid, expired, revoked) and
 * the revocation's reason and time. --expiring-within D: not expired yet
 * and not_after within D from now (a duration as --validity takes it);
 * --valid: not revoked and within its validity now.
 *
 * "Now" is the database's clock, so that every operator sees the same
 * answer whatever the clock of the machine pkictl runs on.
 *
 * Both only read (the session is read-only and has a statement timeout),
 * so they are safe on a standby. CONNINFO is a libpq connection string
 * (key=value ... or postgresql://...); it is never printed, since it may
 * hold a password. Exit status: 0, 1 on failure (unreachable database, no
 * pkid schema, ...), 2 on a usage error. */
#ifndef PKID_CLIENT_FLEET_CMD_H
#define PKID_CLIENT_FLEET_CMD_H

/* fleet_cmd_main runs `pkictl fleet ...`; argv[0] is "fleet". */
int fleet_cmd_main(int argc, char **argv);

/* inventory_cmd_main runs `pkictl inventory ...`; argv[0] is "inventory". */
int inventory_cmd_main(int argc, char **argv);

#endif /* PKID_CLIENT_FLEET_CMD_H */
