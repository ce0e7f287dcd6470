/* err.h: how lib/ reports failure.
 *
 * Every lib/ function that can fail returns int 1 on success and 0 on
 * failure (or a pointer, NULL on failure), and fills a caller-owned pki_err
 * saying what kind of failure it was, where it happened and, in words a user
 * can act on, what is wrong. The code classifies the error for callers: the
 * server maps it to a gRPC status in one place, pkictl to an exit status. */
#ifndef PKID_LIB_ERR_H
#define PKID_LIB_ERR_H

#include <stddef.h>

typedef enum pki_err_code {
  PKI_OK = 0,
  PKI_ERR_INVALID,     /* malformed input: bad DER, bad YAML, bad argument */
  PKI_ERR_UNSUPPORTED, /* well-formed but not supported: key type, size, algorithm */
  PKI_ERR_DENIED,      /* outside a profile or policy: names, usages, validity */
  PKI_ERR_AUTH,        /* a check of proof failed: signature, passphrase, shares */
  PKI_ERR_NOT_FOUND,   /* a named thing does not exist: service, CA, file */
  PKI_ERR_EXISTS,      /* refusing to overwrite something that exists */
  PKI_ERR_PRECONDITION, /* the request is fine, the system is not in a state to
                           do it (a CA not loaded here): not worth retrying */
  PKI_ERR_IO,          /* the file system or the OS failed */
  PKI_ERR_INTERNAL,    /* a library failed where it should not */
  PKI_ERR_EXHAUSTED,   /* out of memory, a queue full, a quota spent: retry later */
  PKI_ERR_UNAVAILABLE, /* not possible now (shutting down, a resource being made
                          ready): retry */
} pki_err_code;

typedef struct pki_err {
  pki_err_code code;
  const char *file; /* source file and line that detected the error */
  int line;
  char msg[512];
} pki_err;

/* pki_err_set_at records an error, replacing any earlier one. Use PKI_ERR. */
void pki_err_set_at(pki_err *err, pki_err_code code, const char *file, int line,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define PKI_ERR(err, code, ...) \
  pki_err_set_at((err), (code), __FILE__, __LINE__, __VA_ARGS__)

/* PKI_ERR_OOM records an allocation failure: PKI_ERR_EXHAUSTED, since the
 * same request may well succeed once memory is back. */
#define PKI_ERR_OOM(err) PKI_ERR((err), PKI_ERR_EXHAUSTED, "out of memory")

/* pki_err_crypto_at records the failure of a BoringSSL call as |code|, or
 * as PKI_ERR_EXHAUSTED if an allocation failed in it: BoringSSL's parsers
 * and verifiers return the same 0 or NULL for that as for bad input. An
 * allocation failed if the thread's error queue holds ERR_R_MALLOC_FAILURE
 * or if errno is ENOMEM: not every allocation site of BoringSSL queues an
 * error, but a failed malloc always sets ENOMEM, so set errno to 0 before
 * the call. The queue is cleared either way. Use PKI_ERR_CRYPTO. */
void pki_err_crypto_at(pki_err *err, pki_err_code code, const char *file, int line,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define PKI_ERR_CRYPTO(err, code, ...) \
  pki_err_crypto_at((err), (code), __FILE__, __LINE__, __VA_ARGS__)

/* pki_err_prefix prepends context ("catalog.yaml:12: ") to the message of an
 * error already set, keeping its code and origin. */
void pki_err_prefix(pki_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* pki_err_clear puts |err| in its zero state (PKI_OK, empty message). */
void pki_err_clear(pki_err *err);

/* pki_err_code_name returns a stable lower-case name for |code|, such as
 * "invalid" or "denied", for logs and messages. */
const char *pki_err_code_name(pki_err_code code);

#endif /* PKID_LIB_ERR_H */
