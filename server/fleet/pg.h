/* pg.h: what the fleet's threads share of libpq: connecting with timeouts
 * and running a statement with errors as pki_err (lib/err.h).
 *
 * A connection belongs to one thread. Errors: PKI_ERR_UNAVAILABLE once the
 * connection is gone (the caller reconnects), else the caller's code. */
#ifndef PKID_SERVER_FLEET_PG_H
#define PKID_SERVER_FLEET_PG_H

#include <postgresql/libpq-fe.h>

#include "lib/err.h"

/* pkid_pg_connect opens a connection to |conninfo|. The caller's conninfo
 * wins over the timeouts given here (a keyword before dbname is overridden
 * by the expanded string): |connect_s| to connect, and |statement_ms| ("0":
 * none) for each statement and each unacknowledged send
 * (tcp_user_timeout), so a database that stops answering fails a call
 * instead of hanging it. */
PGconn *pkid_pg_connect(const char *conninfo, const char *connect_s, const char *statement_ms,
                        pki_err *err);

/* pkid_pg_error records libpq's |msg| (without its trailing newline). */
void pkid_pg_error(pki_err *err, PGconn *c, pki_err_code code, const char *msg);

/* pkid_pg_exec runs one statement with parameters (text unless |formats|
 * says 1) and returns its result, or NULL with |err| set. */
PGresult *pkid_pg_exec(PGconn *c, const char *sql, int n, const char *const *values,
                       const int *lengths, const int *formats, pki_err *err);

/* pkid_pg_script runs |sql| through the simple query protocol, which takes
 * several statements at once (a migration file); no parameters. */
int pkid_pg_script(PGconn *c, const char *sql, pki_err *err);

#endif /* PKID_SERVER_FLEET_PG_H */
