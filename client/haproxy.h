/* haproxy.h: a client of haproxy's runtime API, the stats socket (haproxy
 * 2.6 management guide, section 9.3 "Unix Socket commands").
 *
 * One command per connection, in the socket's default non-interactive
 * mode: haproxy reads one line, runs it, writes its output and closes the
 * connection (9.3). A command that takes a payload ends its line with
 * " <<"; the payload's lines follow and an empty line ends it (9.3, "Some
 * commands may take an optional payload"). So a payload must hold no empty
 * line, and the line and payload together must fit haproxy's buffer
 * (tune.bufsize, 16 kB by default): a CRL file larger than that needs a
 * larger tune.bufsize in haproxy's global section.
 *
 * The socket is "HOST:PORT" (a `stats socket ipv4@127.0.0.1:9999 level
 * admin` line) or the path of a unix socket (anything with a '/').
 *
 * Replies are read strictly: a command whose reply does not say it
 * succeeded, in the words haproxy 2.6 uses (src/ssl_ckch.c), is an error
 * carrying haproxy's text. Errors are lib/'s pki_err: PKI_ERR_UNAVAILABLE
 * when haproxy cannot be reached or does not answer in time,
 * PKI_ERR_DENIED when it answers with a refusal, PKI_ERR_INVALID for a
 * command or payload that cannot be sent. */
#ifndef PKID_CLIENT_HAPROXY_H
#define PKID_CLIENT_HAPROXY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define HAPROXY_DEFAULT_TIMEOUT_MS 10000
/* haproxy's answers to these commands are a few lines; "show" commands
 * can say more. A reply past this is cut and refused. */
#define HAPROXY_REPLY_MAX ((size_t)1 << 20)

/* haproxy_run sends |command| (one line, no newline; " <<" and |payload|
 * are added when |payload| is not NULL) to the stats socket |socket| and
 * reads the reply to the end, into |*out_reply| (malloc'd, NUL-terminated,
 * |*out_len| bytes; the caller frees it). It fails only when the exchange
 * does: what the reply says is the caller's to judge. */
int haproxy_run(char **out_reply, size_t *out_len, const char *socket, const char *command,
                const char *payload, uint64_t timeout_ms, pki_err *err);

/* haproxy_reply_is_transaction reports whether |reply| is a transaction's
 * "created" or "updated" line ("transaction created for CA crl.pem!",
 * "Transaction updated for certificate x.pem!"): the answer of every
 * `set ssl ...` command that opens or extends a transaction. */
int haproxy_reply_is_transaction(const char *reply);

/* haproxy_reply_is_committed reports whether |reply| is a commit that
 * succeeded: "Committing NAME", progress dots, and "Success!" on the last
 * line (`commit ssl cert|ca-file|crl-file`). */
int haproxy_reply_is_committed(const char *reply);

/* haproxy_update_crl_file replaces the CRL file haproxy knows as |name|
 * (the path its configuration's crl-file names, as written there) with
 * |pem|, one or more PEM "X509 CRL" blocks: `set ssl crl-file NAME <<`
 * with the PEM, then `commit ssl crl-file NAME` (management guide 9.3).
 * Haproxy rebuilds the SSL contexts that use the file and keeps its
 * connections and its pid. When either step fails, `abort ssl crl-file
 * NAME` drops the transaction (haproxy allows one at a time) and the
 * error names the step and quotes haproxy. */
int haproxy_update_crl_file(const char *socket, const char *name, const char *pem,
                            uint64_t timeout_ms, pki_err *err);

#endif /* PKID_CLIENT_HAPROXY_H */
