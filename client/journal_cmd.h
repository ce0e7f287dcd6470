/* journal_cmd.h: `pkictl journal verify DIR [--checkpoint FILE]`, the
 * offline audit of a journal: every CRC, seq and chain link from segment
 * 1, every snapshot against the chain, and a signed checkpoint against
 * the journal. It reads only; it never repairs. */
#ifndef PKID_CLIENT_JOURNAL_CMD_H
#define PKID_CLIENT_JOURNAL_CMD_H

#include <stdio.h>

#include "lib/err.h"

/* journal_cmd_verify checks the journal in |dir| and prints a summary to
 * |out|: segments, records by type, first and last seq, the final chain
 * hash in hex, a torn tail if any. On failure it prints the segment file
 * and byte offset of the first problem as well, and fails with |err|.
 *
 * With |checkpoint| (a file pkid signed, lib/checkpoint.h) it also checks
 * the checkpoint's signature with the audit public key in |pub| and that
 * the journal still holds the checkpointed prefix: record seq with the
 * chain hash signed. A journal cut before it, or rewritten up to it (even
 * with its chain recomputed), or another journal, fails. */
int journal_cmd_verify(FILE *out, const char *dir, const char *checkpoint, const char *pub,
                       pki_err *err);

#endif /* PKID_CLIENT_JOURNAL_CMD_H */
