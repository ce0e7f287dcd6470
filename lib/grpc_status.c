#include "lib/grpc_status.h"

static const char *const kNames[PKI_GRPC_NUM_STATUSES] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *pki_grpc_status_name(int status) {
  if (status < 0 || status >= PKI_GRPC_NUM_STATUSES) return "UNKNOWN";
  return kNames[status];
}

pki_grpc_status pki_grpc_status_from_err(pki_err_code code) {
  switch (code) {
    case PKI_OK: return PKI_GRPC_OK;
    case PKI_ERR_INVALID:
    case PKI_ERR_UNSUPPORTED: return PKI_GRPC_INVALID_ARGUMENT;
    case PKI_ERR_DENIED: return PKI_GRPC_PERMISSION_DENIED;
    case PKI_ERR_AUTH: return PKI_GRPC_UNAUTHENTICATED;
    case PKI_ERR_NOT_FOUND: return PKI_GRPC_NOT_FOUND;
    case PKI_ERR_EXISTS: return PKI_GRPC_ALREADY_EXISTS;
    case PKI_ERR_PRECONDITION: return PKI_GRPC_FAILED_PRECONDITION;
    case PKI_ERR_EXHAUSTED: return PKI_GRPC_RESOURCE_EXHAUSTED;
    case PKI_ERR_UNAVAILABLE: return PKI_GRPC_UNAVAILABLE;
    case PKI_ERR_IO:
    case PKI_ERR_INTERNAL: return PKI_GRPC_INTERNAL;
  }
  return PKI_GRPC_UNKNOWN;
}

int pki_grpc_status_retryable(int status) {
  return status == PKI_GRPC_UNAVAILABLE || status == PKI_GRPC_RESOURCE_EXHAUSTED;
}
