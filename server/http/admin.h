/* admin.h: the admin HTTP listener: GET /metrics (Prometheus text format
 * 0.0.4, from a metrics.h registry), GET /healthz, GET /readyz and GET
 * /checkpoint.
 *
 * /healthz answers 200 "ok" whenever it is answered at all: the handler
 * runs on the event loop, so an answer means the loop runs. /readyz
 * answers 200 "ready" once pkid_admin_set_ready(a, 1) was called (the CAs
 * are loaded and the journal is open), 503 "not ready" before and after
 * pkid_admin_set_ready(a, 0) (draining). Loop thread only. */
#ifndef PKID_SERVER_HTTP_ADMIN_H
#define PKID_SERVER_HTTP_ADMIN_H

#include <stddef.h>

#include <uv.h>

#include "lib/err.h"
#include "server/metrics/metrics.h"

typedef struct pkid_admin pkid_admin;

/* pkid_admin_start listens on "HOST:PORT" (port 0: the kernel picks; the
 * address is logged as {"event":"listening","admin":"HOST:PORT"}) and
 * serves |reg|, which must outlive it. */
pkid_admin *pkid_admin_start(uv_loop_t *loop, const char *listen, pkid_registry *reg,
                             pki_err *err);

void pkid_admin_set_ready(pkid_admin *a, int ready);

/* pkid_admin_set_checkpoint publishes the journal's newest signed
 * checkpoint (lib/checkpoint.h) at GET /checkpoint (copied; 404 before the
 * first). */
void pkid_admin_set_checkpoint(pkid_admin *a, const char *text, size_t len);

/* pkid_admin_address writes "HOST:PORT" and returns the port. */
int pkid_admin_address(const pkid_admin *a, char *out, size_t out_size);

/* pkid_admin_stop closes the listener and its connections (1 s grace);
 * |done| runs once all is freed. */
void pkid_admin_stop(pkid_admin *a, void (*done)(void *arg), void *arg);

#endif /* PKID_SERVER_HTTP_ADMIN_H */
