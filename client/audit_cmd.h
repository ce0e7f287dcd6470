/* audit_cmd.h: `pkictl audit DIR [filters] [--table]`: pkid's journal
 * queried as its audit trail, offline, from the segment files.
 *
 * Every record is checked as `pkictl journal verify` checks it (CRC, seq,
 * chain) while it is read, so what is printed is what the chain commits
 * to; a broken journal stops the query at the first problem. Events are
 * lib/audit.h's: one JSON object per line (the default), or a table for
 * people. Filters (each optional, all must match): --service NAME,
 * --identity URI, --serial HEX, --kind KIND, --since TIME, --until TIME
 * (RFC 3339 UTC "2026-12-02T18:00:00Z", or Unix seconds). A summary line
 * goes to stderr: how many events matched, of how many records. */
#ifndef PKID_CLIENT_AUDIT_CMD_H
#define PKID_CLIENT_AUDIT_CMD_H

/* audit_cmd_main runs `pkictl audit ...`; argv[0] is "audit". It returns
 * the exit status: 0, 1 on a failure, 2 on a usage error. */
int audit_cmd_main(int argc, char **argv);

#endif /* PKID_CLIENT_AUDIT_CMD_H */
