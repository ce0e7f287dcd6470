/* pkiclient.h: libpkiclient, the C client of pkid's gRPC API (pki.v1).
 *
 * It calls pkid over gRPC (Debian's gRPC core) with mutual TLS. Keys are
 * made locally with BoringSSL and never sent: pkid receives a CSR and
 * answers with a certificate.
 *
 * Conventions, as in BoringSSL: functions return 1 on success and 0 on
 * failure, filling a caller-owned pkc_error; out-structs are the caller's
 * and are released with their *_cleanup function (safe on a zeroed struct,
 * and on a struct the call failed to fill).
 *
 * Errors: pkc_error.status is a gRPC status code (PKC_STATUS_*, the same
 * numbers as grpc_status_code), with the server's message (grpc-message).
 * Failures found before anything is sent (a bad argument, a file that
 * cannot be read, a key that cannot be made) carry a status too, with
 * |local| set. pkc_error_retryable says whether trying again later may work.
 *
 * Retries: a call that ends in UNAVAILABLE or RESOURCE_EXHAUSTED is tried
 * again, up to pkc_retry_policy.max_attempts in all, after an exponential
 * backoff with jitter. No other status is retried. Note that Issue is not
 * idempotent: when a reply is lost after pkid issued, a retry issues a
 * second certificate (the first simply goes unused). IssueStream is retried
 * only when it failed before any response came back.
 *
 * Deadlines: every attempt gets pkc_options.deadline_us; on expiry the call
 * ends with DEADLINE_EXCEEDED (not retried here: the caller chose the
 * budget).
 *
 * Who pkid is: a server is pkid only if its certificate carries pkid's
 * identity and comes from pkid's CA (pkc_options.server_identity and
 * server_ca_*), on top of TLS's chain and name checks: under one root, a
 * DNS name alone does not tell pkid from the load balancer, whose
 * "*.cybersec-framework.local" matches pkid's name. Any other server is
 * refused during the handshake, before a request (or a bootstrap token) is
 * sent: the call fails with UNAUTHENTICATED, |local| and |server_refused|
 * set and the reason in the message. It is not retried: the server is not
 * pkid, and asking it again will not make it so.
 *
 * Every |err| argument may be NULL.
 *
 * Thread safety: a pkc_client may be used by any number of threads at once
 * (the gRPC channel is shared; each call has its own completion queue).
 * pkc_client_free must not race with calls in progress. Result structs are
 * not shared by the library. */
#ifndef PKID_CLIENT_PKICLIENT_H
#define PKID_CLIENT_PKICLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h> /* EVP_PKEY */

#if defined(__cplusplus)
extern "C" {
#endif

/* gRPC status codes (grpc/status.h). */
enum {
  PKC_STATUS_OK = 0,
  PKC_STATUS_CANCELLED = 1,
  PKC_STATUS_UNKNOWN = 2,
  PKC_STATUS_INVALID_ARGUMENT = 3,
  PKC_STATUS_DEADLINE_EXCEEDED = 4,
  PKC_STATUS_NOT_FOUND = 5,
  PKC_STATUS_ALREADY_EXISTS = 6,
  PKC_STATUS_PERMISSION_DENIED = 7,
  PKC_STATUS_RESOURCE_EXHAUSTED = 8,
  PKC_STATUS_FAILED_PRECONDITION = 9,
  PKC_STATUS_ABORTED = 10,
  PKC_STATUS_OUT_OF_RANGE = 11,
  PKC_STATUS_UNIMPLEMENTED = 12,
  PKC_STATUS_INTERNAL = 13,
  PKC_STATUS_UNAVAILABLE = 14,
  PKC_STATUS_DATA_LOSS = 15,
  PKC_STATUS_UNAUTHENTICATED = 16,
};

typedef struct pkc_error {
  int status;        /* PKC_STATUS_*; PKC_STATUS_OK when there is no error */
  int local;         /* 1: found here, before or after the call; 0: from the wire */
  /* 1: the server's certificate was refused: it is not pkid (the message
   * says why). Then |status| is UNAUTHENTICATED and |local| is set. */
  int server_refused;
  unsigned attempts; /* attempts made by the last call (retries included) */
  char message[512]; /* the server's grpc-message, or what went wrong here */
} pkc_error;

/* pkc_status_name returns "UNAVAILABLE" and the like (static string). */
const char *pkc_status_name(int status);

/* pkc_error_retryable reports whether the same request may succeed later:
 * UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED. */
int pkc_error_retryable(const pkc_error *err);

typedef struct pkc_retry_policy {
  unsigned max_attempts;       /* in all, first try included; 0: 4; 1: no retry */
  uint32_t initial_backoff_ms; /* 0: 100 */
  uint32_t max_backoff_ms;     /* 0: 5000 */
  double multiplier;           /* growth per retry; 0: 2.0 */
  double jitter;               /* each sleep is scaled by 1 +- jitter; 0..1 */
} pkc_retry_policy;

typedef struct pkc_options {
  const char *target;        /* "host:port" (any gRPC target), required */
  const char *root_pem_file; /* CA certificate(s) that vouch for pkid; required */
  /* The client certificate, PEM, optionally followed by its chain; with
   * |key_pem_file|. Both NULL: no client certificate (bootstrap). */
  const char *cert_pem_file;
  const char *chain_pem_file; /* optional: intermediates appended to the cert */
  const char *key_pem_file;
  /* The name pkid's certificate must carry, when it differs from the host
   * in |target| (e.g. a loopback address): "pki-ca.cybersec-framework.local". */
  const char *server_name_override;
  /* Who pkid is. Its certificate's URI SAN (the first: pkid's identity)
   * must be |server_identity|; NULL: the pki-ca service's identity in the
   * catalogue built into the library,
   * "spiffe://cybersec-framework.local/infrastructure/pki-ca".
   * And it must be issued by pkid's CA:
   *  - with |server_ca_pem_file| (that CA's certificate, PEM or DER; of a
   *    file of several, such as a trust store, the first), by key: its
   *    issuer is the CA's subject, its authority key identifier the CA's
   *    subject key identifier, and its signature verifies with the CA's key;
   *  - without, by name: its issuer's CN is |server_ca_common_name| (NULL:
   *    that of pki-ca's CA in the built-in catalogue, infrastructure-ca's).
   *    The chain to the root is verified by TLS already, and the root
   *    certifies one CA of each name; the key check is stronger still, and
   *    preferred wherever the CA's certificate is at hand (a pki/ tree). */
  const char *server_identity;
  const char *server_ca_pem_file;
  const char *server_ca_common_name;
  uint64_t deadline_us; /* per attempt; 0: 30 s */
  pkc_retry_policy retry;
} pkc_options;

/* PKC_PKID_SERVICE is the catalogue service whose certificate pkid
 * presents: its identity and its CA say who pkid is. */
#define PKC_PKID_SERVICE "pki-ca"

typedef struct pkc_client pkc_client;

/* pkc_client_new reads the files and makes a channel; it does not connect
 * yet (the first call does). Free with pkc_client_free. */
pkc_client *pkc_client_new(const pkc_options *opts, pkc_error *err);
void pkc_client_free(pkc_client *client);

/* A DER blob, malloc'd. */
typedef struct pkc_der {
  uint8_t *data;
  size_t len;
} pkc_der;

typedef enum pkc_usage {
  PKC_USAGE_SERVER = 1, /* EKU serverAuth */
  PKC_USAGE_CLIENT = 2, /* EKU clientAuth */
} pkc_usage;

typedef enum pkc_key_type {
  PKC_KEY_ECDSA_P256 = 0, /* the default */
  PKC_KEY_ECDSA_P384,
  PKC_KEY_ED25519,
  PKC_KEY_RSA_2048,
  PKC_KEY_RSA_3072,
  PKC_KEY_RSA_4096,
} pkc_key_type;

/* pkc_key_type_parse reads "ecdsa-p256", "ecdsa-p384", "ed25519",
 * "rsa-2048", "rsa-3072" or "rsa-4096". */
int pkc_key_type_parse(pkc_key_type *out, const char *text, pkc_error *err);

/* What to ask for. The key comes from the first of: |csr| (sent as is; the
 * caller holds its key and pkc_issued.key stays NULL), |key| (a CSR is made
 * for it; pkc_issued.key takes a new reference), or a fresh key of
 * |key_type|. */
typedef struct pkc_issue_params {
  const char *service;         /* NULL or "": the caller's own (Issue only) */
  pkc_usage usage;             /* Issue only; Renew keeps the current one */
  pkc_key_type key_type;
  uint32_t validity_seconds;   /* 0: the profile's lifetime */
  const char *bootstrap_token; /* first enrollment without a certificate */
  const char *common_name;     /* CN of the CSR; NULL: none (pkid decides) */
  EVP_PKEY *key;               /* optional existing key (not consumed) */
  const uint8_t *csr;          /* optional DER CSR */
  size_t csr_len;
} pkc_issue_params;

typedef struct pkc_issued {
  EVP_PKEY *key;          /* the subject key; NULL when the caller sent a CSR,
                           * and on a failed request of a stream */
  pkc_der cert;           /* the certificate, DER */
  pkc_der *chain;         /* intermediates, nearest first, up to (not incl.) the root */
  size_t num_chain;
  char serial[64];        /* lower-case hex */
  int64_t not_after;      /* seconds since the epoch */
  pkc_error error;        /* pkc_issue_stream: this request's own outcome */
} pkc_issued;

void pkc_issued_cleanup(pkc_issued *issued);

/* pkc_issue makes (or takes) a key and a CSR and has pkid certify it. */
int pkc_issue(pkc_client *client, const pkc_issue_params *params, pkc_issued *out,
              pkc_error *err);

/* pkc_renew replaces the certificate the client was made with: same
 * service and usage, authorized by holding it. |params->service|, |usage|
 * and |bootstrap_token| are ignored. */
int pkc_renew(pkc_client *client, const pkc_issue_params *params, pkc_issued *out,
              pkc_error *err);

/* pkc_issue_stream sends |num| requests on one IssueStream and fills
 * |out[i]| with the answer to |params[i]|; each out[i].error tells that
 * request's status. It returns 1 when the stream itself ended well (even if
 * some requests failed); 0 with |err| set otherwise, and then every request
 * left unanswered carries the stream's error. Keys and CSRs are made before
 * the stream opens. */
int pkc_issue_stream(pkc_client *client, const pkc_issue_params *params, size_t num,
                     pkc_issued *out, pkc_error *err);

/* RFC 5280 5.3.1 CRLReason values (7 is not used). */
typedef enum pkc_revocation_reason {
  PKC_REVOKE_UNSPECIFIED = 0,
  PKC_REVOKE_KEY_COMPROMISE = 1,
  PKC_REVOKE_CA_COMPROMISE = 2,
  PKC_REVOKE_AFFILIATION_CHANGED = 3,
  PKC_REVOKE_SUPERSEDED = 4,
  PKC_REVOKE_CESSATION_OF_OPERATION = 5,
  PKC_REVOKE_CERTIFICATE_HOLD = 6, /* final in pkid: no certificate comes back from it */
  PKC_REVOKE_REMOVE_FROM_CRL = 8,  /* only delta CRLs carry it; never a reason to revoke */
  PKC_REVOKE_PRIVILEGE_WITHDRAWN = 9,
  PKC_REVOKE_AA_COMPROMISE = 10,
} pkc_revocation_reason;

/* pkc_revoke revokes the certificate with serial |serial_hex|; on success
 * |*out_revoked_at| (may be NULL) is when pkid recorded it. It is
 * pkc_revoke_ex with no invalidity date and not by key. */
int pkc_revoke(pkc_client *client, const char *serial_hex, pkc_revocation_reason reason,
               int64_t *out_revoked_at, pkc_error *err);

typedef struct pkc_revoke_params {
  const char *serial;           /* hex, required */
  pkc_revocation_reason reason; /* any but PKC_REVOKE_REMOVE_FROM_CRL */
  /* When the key is known or suspected to have been compromised, or the
   * certificate to have become invalid (RFC 5280 5.3.2): seconds since
   * the epoch, not after the revocation; 0: not given. */
  int64_t invalidity_date;
  /* With PKC_REVOKE_KEY_COMPROMISE only: revoke every unexpired
   * certificate of the same subject key, whatever its service (each was
   * issued on proof of possession of that key). */
  int same_key;
} pkc_revoke_params;

typedef struct pkc_revoked {
  int64_t revoked_at; /* when pkid recorded the revocation */
  /* Every certificate the call revoked, lower-case hex, the one named
   * first (more than one only with |same_key|); malloc'd. */
  char **serials;
  size_t num_serials;
} pkc_revoked;

void pkc_revoked_cleanup(pkc_revoked *revoked);

/* pkc_revoke_ex revokes as |params| says and fills |out|. A reason out of
 * range, removeFromCRL, a negative invalidity date or |same_key| without
 * keyCompromise fail here with INVALID_ARGUMENT (|local| set), before
 * anything is sent. */
int pkc_revoke_ex(pkc_client *client, const pkc_revoke_params *params, pkc_revoked *out,
                  pkc_error *err);

typedef enum pkc_cert_state {
  PKC_CERT_UNSPECIFIED = 0,
  PKC_CERT_GOOD = 1,
  PKC_CERT_REVOKED = 2,
  PKC_CERT_EXPIRED = 3,
} pkc_cert_state;

typedef struct pkc_cert_status {
  char serial[64];
  pkc_cert_state state;
  char service[128];  /* catalogue service it was issued for */
  char identity[512]; /* who asked for it */
  int usage;          /* pkc_usage, or 0 when pkid did not say */
  char issuer[128];   /* issuing CA's catalogue name */
  int64_t not_before, not_after;
  int64_t revoked_at; /* 0 unless revoked */
  pkc_revocation_reason revocation_reason;
  int64_t invalidity_date; /* 0 unless given at revocation (RFC 5280 5.3.2) */
} pkc_cert_status;

int pkc_status(pkc_client *client, const char *serial_hex, pkc_cert_status *out,
               pkc_error *err);

/* pkc_report_rotation tells pkid that a load balancer put the certificate
 * |serial_hex| in service under |frontend| (its name there, e.g. haproxy's
 * "/etc/haproxy/certs/lb.pem"), replacing |previous_hex| (NULL or "":
 * none), so that the rotation is on pkid's audit trail. The certificate
 * must be of the caller's own service (an admin: any). It returns once the
 * report is durable in pkid's journal. */
int pkc_report_rotation(pkc_client *client, const char *frontend, const char *serial_hex,
                        const char *previous_hex, pkc_error *err);

/* An ACME external account binding key (RFC 8555 7.3.4), as an ACME
 * client is configured with it (certbot's --eab-kid and --eab-hmac-key). */
typedef struct pkc_acme_eab {
  char kid[65];      /* the key id, "eab-..." */
  char hmac_key[64]; /* the HMAC-SHA256 key's 32 octets, base64url, no padding */
} pkc_acme_eab;

/* pkc_acme_eab_cleanup wipes the key. */
void pkc_acme_eab_cleanup(pkc_acme_eab *eab);

/* pkc_create_acme_eab has pkid make an EAB key for |service|, whose server
 * certificates an ACME account bound with it may then obtain. The caller
 * must be an admin identity (else PERMISSION_DENIED); an unknown service
 * is NOT_FOUND, one without a server certificate INVALID_ARGUMENT, and a
 * pkid without ACME FAILED_PRECONDITION. It returns once pkid has
 * journaled the key id (never the key); |out| is the only copy of the key
 * the caller gets. Like Issue, it is not idempotent: a retry after a lost
 * reply makes a second key (the first simply goes unused). */
int pkc_create_acme_eab(pkc_client *client, const char *service, pkc_acme_eab *out,
                        pkc_error *err);

typedef struct pkc_trust_store {
  char *ca;        /* catalogue name of the CA */
  pkc_der cert;    /* the CA's certificate */
  pkc_der *chain;  /* its parents up to and including the root */
  size_t num_chain;
  char *pem;       /* the trust store file: the CA, its parents, the root */
} pkc_trust_store;

typedef struct pkc_trust_bundle {
  pkc_der root; /* the offline root's certificate */
  /* 1 when |root| is one of the certificates of the client's root_pem_file:
   * the root this client already trusts. Set by pkc_trust_bundle_get. */
  int root_trusted;
  pkc_trust_store *stores;
  size_t num_stores;
} pkc_trust_bundle;

/* pkc_trust_bundle_get fetches every CA's store, or only |ca_name|'s (NULL:
 * all); an unknown CA is NOT_FOUND. A bundle whose root is not the one the
 * client trusts is returned (with root_trusted 0): reading it is harmless,
 * installing it is what pkc_trust_bundle_write guards. */
int pkc_trust_bundle_get(pkc_client *client, const char *ca_name, pkc_trust_bundle *out,
                         pkc_error *err);
void pkc_trust_bundle_cleanup(pkc_trust_bundle *bundle);

/* Files. Each file is replaced atomically (a reader sees the old file or
 * the new one); private keys get mode 0600, certificates 0644.
 *
 * pkc_issued_write writes the key (PKCS#8 PEM) to |key_path| (skipped when
 * NULL or there is no key), the certificate to |cert_path| and the chain to
 * |chain_path|; with |chain_path| NULL the chain follows the certificate in
 * |cert_path| ("full chain"). The key is written first, the certificate
 * last: a reader keyed on the certificate's change sees a matching key. */
int pkc_issued_write(const pkc_issued *issued, const char *key_path, const char *cert_path,
                     const char *chain_path, pkc_error *err);

/* pkc_trust_bundle_write writes |ca_name|'s trust store PEM to |path|, or
 * the root certificate alone when |ca_name| is NULL: it is
 * pkc_trust_bundle_write_ex with no flags. */
int pkc_trust_bundle_write(const pkc_trust_bundle *bundle, const char *ca_name,
                           const char *path, pkc_error *err);

/* Flags of pkc_trust_bundle_write_ex. */
/* PKC_BUNDLE_ACCEPT_NEW_ROOT: install a bundle whose root is not the one
 * the client trusts (a root being replaced on purpose). */
#define PKC_BUNDLE_ACCEPT_NEW_ROOT 0x1u

/* pkc_trust_bundle_write_ex writes as pkc_trust_bundle_write, after two
 * checks; nothing is written when either fails (a local
 * FAILED_PRECONDITION saying why):
 *  - the bundle's root is the one the client trusts (root_trusted), unless
 *    |flags| has PKC_BUNDLE_ACCEPT_NEW_ROOT: whoever can swap the root in
 *    every trust store owns the fleet, so a new root is installed only when
 *    the caller says so;
 *  - the store written is what the root certifies, whatever the flags: it
 *    ends with the bundle's root, and each certificate in it is signed by
 *    the next (so a store cannot smuggle another root past the first
 *    check). */
int pkc_trust_bundle_write_ex(const pkc_trust_bundle *bundle, const char *ca_name,
                              const char *path, unsigned flags, pkc_error *err);

#if defined(__cplusplus)
}
#endif

#endif /* PKID_CLIENT_PKICLIENT_H */
