/* journal_cmd.h: `pkictl journal verify DIR`, the offline audit of a
 * journal: every CRC, seq and chain link from segment 1, and every
 * snapshot against the chain. It reads only; it never repairs. */
#ifndef PKID_CLIENT_JOURNAL_CMD_H
#define PKID_CLIENT_JOURNAL_CMD_H

#include <stdio.h>

#include "lib/err.h"

/* journal_cmd_verify checks the journal in |dir| and prints a summary to
 * |out|: segments, records by type, first and last seq, the final chain
 * hash in hex, a torn tail if any. On failure it prints the segment file
 * and byte offset of the first problem as well, and fails with |err|. */
int journal_cmd_verify(FILE *out, const char *dir, pki_err *err);

#endif /* PKID_CLIENT_JOURNAL_CMD_H */
