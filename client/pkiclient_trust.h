/* pkiclient_trust.h: libpkiclient's internals for what a client trusts:
 * who pkid is (checked on every TLS connection, before anything is sent)
 * and which root it anchors to (checked before a trust bundle is
 * installed). Not part of the public API; see pkc_options in pkiclient.h.
 *
 * Convention: functions return 1 on success and 0 on failure with a local
 * pkc_error, as the rest of libpkiclient. */
#ifndef PKID_CLIENT_PKICLIENT_TRUST_H
#define PKID_CLIENT_PKICLIENT_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "client/pkiclient.h"

/* pkc_certs is a list of DER certificates read from PEM text. */
typedef struct pkc_certs {
  pkc_der *certs;
  size_t num;
} pkc_certs;

/* pkc_certs_from_pem reads every CERTIFICATE block of |pem| (text between
 * and around the blocks is passed over, as lib/pem does), or |pem| itself
 * as one DER certificate when it has no PEM armour at all. |what| names
 * the text in messages. Fails when there is no certificate. */
int pkc_certs_from_pem(pkc_certs *out, const uint8_t *pem, size_t pem_len, const char *what,
                       pkc_error *err);
void pkc_certs_cleanup(pkc_certs *certs);

/* pkc_certs_contains reports whether |der| is one of |certs|, byte for
 * byte. */
int pkc_certs_contains(const pkc_certs *certs, const uint8_t *der, size_t der_len);

/* pkc_cert_describe writes "CN=..., SHA-256 ab:cd:..." for messages. */
void pkc_cert_describe(char *out, size_t out_size, const uint8_t *der, size_t der_len);

/* pkc_peer_check holds what pkid's certificate must be. gRPC calls it from
 * its own threads while the channel lives, and the client reads the last
 * refusal from its own: it is reference-counted (the client holds one
 * reference, the gRPC credentials another) and locked inside. */
typedef struct pkc_peer_check pkc_peer_check;

/* pkc_peer_check_new resolves |opts|' server_identity, server_ca_pem_file
 * and server_ca_common_name (defaults from the built-in catalogue) into a
 * check with one reference. Fails with a local INVALID_ARGUMENT (or
 * NOT_FOUND for a missing file) when it cannot tell who pkid is. */
pkc_peer_check *pkc_peer_check_new(const pkc_options *opts, pkc_error *err);
void pkc_peer_check_ref(pkc_peer_check *check);
void pkc_peer_check_unref(pkc_peer_check *check);

/* pkc_peer_check_verify judges one server certificate (PEM, the leaf, as
 * gRPC hands it over) and records the outcome as the latest. On a refusal
 * it returns 0 and writes why to |why| ("its identity is ..., not ..."). */
int pkc_peer_check_verify(pkc_peer_check *check, const char *peer_pem, char *why,
                          size_t why_size);

/* pkc_peer_check_refused reports whether the latest server certificate
 * judged was refused, copying why into |why|. A later certificate that
 * passes clears it. */
int pkc_peer_check_refused(pkc_peer_check *check, char *why, size_t why_size);

/* For grpc_ssl_verify_peer_options: userdata is a pkc_peer_check whose
 * reference the credentials own (released by the destructor). The callback
 * returns non-zero to refuse the handshake. */
int pkc_peer_check_grpc_verify(const char *target_name, const char *peer_pem,
                               void *userdata);
void pkc_peer_check_grpc_destruct(void *userdata);

#endif /* PKID_CLIENT_PKICLIENT_TRUST_H */
