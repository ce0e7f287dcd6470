/* grpc_status.h: the gRPC status codes (grpc/doc/statuscodes.md), their
 * names, and the one mapping from lib/'s error classes to them.
 *
 * The server answers with these codes, libpkiclient reports them, and the
 * load generator counts them: one table, so that a name printed by any of
 * them means the same code. */
#ifndef PKID_LIB_GRPC_STATUS_H
#define PKID_LIB_GRPC_STATUS_H

#include "lib/err.h"

typedef enum pki_grpc_status {
  PKI_GRPC_OK = 0,
  PKI_GRPC_CANCELLED = 1,
  PKI_GRPC_UNKNOWN = 2,
  PKI_GRPC_INVALID_ARGUMENT = 3,
  PKI_GRPC_DEADLINE_EXCEEDED = 4,
  PKI_GRPC_NOT_FOUND = 5,
  PKI_GRPC_ALREADY_EXISTS = 6,
  PKI_GRPC_PERMISSION_DENIED = 7,
  PKI_GRPC_RESOURCE_EXHAUSTED = 8,
  PKI_GRPC_FAILED_PRECONDITION = 9,
  PKI_GRPC_ABORTED = 10,
  PKI_GRPC_OUT_OF_RANGE = 11,
  PKI_GRPC_UNIMPLEMENTED = 12,
  PKI_GRPC_INTERNAL = 13,
  PKI_GRPC_UNAVAILABLE = 14,
  PKI_GRPC_DATA_LOSS = 15,
  PKI_GRPC_UNAUTHENTICATED = 16,
} pki_grpc_status;

#define PKI_GRPC_NUM_STATUSES 17

/* pki_grpc_status_name returns "OK", "INVALID_ARGUMENT" and so on, and
 * "UNKNOWN" for a value outside the table (a peer may send any number). */
const char *pki_grpc_status_name(int status);

/* pki_grpc_status_from_err is the status a client is told for an error of
 * class |code|. Conditions worth retrying (PKI_ERR_EXHAUSTED,
 * PKI_ERR_UNAVAILABLE) map to RESOURCE_EXHAUSTED and UNAVAILABLE, the two
 * codes gRPC clients retry; nothing retryable maps to INTERNAL. */
pki_grpc_status pki_grpc_status_from_err(pki_err_code code);

/* pki_grpc_status_retryable: UNAVAILABLE and RESOURCE_EXHAUSTED, the codes
 * after which the same request may succeed later. */
int pki_grpc_status_retryable(int status);

#endif /* PKID_LIB_GRPC_STATUS_H */
