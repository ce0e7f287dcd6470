/* pkiclient_call.h: libpkiclient's internals: the client struct, errors,
 * and the generic gRPC call machinery (unary and bidirectional streaming,
 * with deadlines and retries) on gRPC core. Not part of the public API. */
#ifndef PKID_CLIENT_PKICLIENT_CALL_H
#define PKID_CLIENT_PKICLIENT_CALL_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "client/pkiclient.h"
#include "client/pkiclient_trust.h"
#include "lib/err.h"

struct pkc_client {
  grpc_channel *channel;
  uint64_t deadline_us;
  pkc_retry_policy retry; /* defaults filled in */
  char *target;           /* for messages */
  pkc_peer_check *peer;   /* who pkid is; one reference (gRPC holds another) */
  pkc_certs roots;        /* the certificates of root_pem_file */
};

/* pkc_err_set fills |err| (status, local, message; server_refused cleared;
 * attempts kept). */
void pkc_err_set(pkc_error *err, int status, int local, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* pkc_err_from_pki turns a lib/ error into a local pkc_error. */
void pkc_err_from_pki(pkc_error *err, const pki_err *e);

/* pkc_call_unary sends |req| to |method| ("/pki.v1.Pki/Issue") and returns
 * the response message, malloc'd, in |*out| (NULL when empty). Retries as
 * the client's policy says. */
int pkc_call_unary(pkc_client *client, const char *method, const uint8_t *req,
                   size_t req_len, uint8_t **out, size_t *out_len, pkc_error *err);

/* pkc_stream_on_message gets each response of a stream; returning 0 ends
 * the call with INTERNAL and |err| (already set by the callback). */
typedef int (*pkc_stream_on_message)(void *ctx, const uint8_t *msg, size_t len,
                                     pkc_error *err);

/* pkc_call_stream sends |num| messages on one bidirectional stream, then
 * half-closes, handing every response to |on_message| as it comes. It
 * returns 1 when the stream ended with OK. It retries (per policy) only
 * when an attempt failed before any response arrived. */
int pkc_call_stream(pkc_client *client, const char *method, const pkc_der *reqs,
                    size_t num, pkc_stream_on_message on_message, void *ctx,
                    pkc_error *err);

#endif /* PKID_CLIENT_PKICLIENT_CALL_H */
