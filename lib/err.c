#include "lib/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static void err_vset(pki_err *err, pki_err_code code, const char *file, int line,
                     const char *fmt, va_list ap) {
  err->code = code;
  err->file = file;
  err->line = line;
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

void pki_err_set_at(pki_err *err, pki_err_code code, const char *file, int line,
                    const char *fmt, ...) {
  if (err == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, file, line, fmt, ap);
  va_end(ap);
}

void pki_err_crypto_at(pki_err *err, pki_err_code code, const char *file, int line,
                       const char *fmt, ...) {
  int oom = errno == ENOMEM;
  uint32_t e;
  while ((e = ERR_get_error()) != 0) {
    if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) oom = 1;
  }
  if (err == NULL) return;
  if (oom) {
    pki_err_set_at(err, PKI_ERR_EXHAUSTED, file, line, "out of memory");
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  err_vset(err, code, file, line, fmt, ap);
  va_end(ap);
}

void pki_err_prefix(pki_err *err, const char *fmt, ...) {
  if (err == NULL) return;
  char prefix[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  char joined[sizeof(err->msg)];
  snprintf(joined, sizeof(joined), "%s%s", prefix, err->msg);
  memcpy(err->msg, joined, sizeof(err->msg));
}

void pki_err_clear(pki_err *err) {
  if (err == NULL) return;
  memset(err, 0, sizeof(*err));
}

const char *pki_err_code_name(pki_err_code code) {
  switch (code) {
    case PKI_OK: return "ok";
    case PKI_ERR_INVALID: return "invalid";
    case PKI_ERR_UNSUPPORTED: return "unsupported";
    case PKI_ERR_DENIED: return "denied";
    case PKI_ERR_AUTH: return "auth";
    case PKI_ERR_NOT_FOUND: return "not-found";
    case PKI_ERR_EXISTS: return "exists";
    case PKI_ERR_PRECONDITION: return "precondition";
    case PKI_ERR_IO: return "io";
    case PKI_ERR_INTERNAL: return "internal";
    case PKI_ERR_EXHAUSTED: return "exhausted";
    case PKI_ERR_UNAVAILABLE: return "unavailable";
  }
  return "unknown";
}
