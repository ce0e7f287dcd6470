/* tls.h: the server's TLS context: BoringSSL, TLS 1.2 and 1.3, ALPN "h2",
 * and a client certificate required and verified against pkid's root.
 *
 * Only certificates that chain to the root through one of pkid's
 * intermediates can verify, since only they are signed by the root. The
 * caller's identity is then read from the leaf (pkid_tls_peer_identity). */
#ifndef PKID_SERVER_TLS_H
#define PKID_SERVER_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lib/err.h"

/* pkid_tls_ctx_new makes a server context from PEM files: the server's
 * certificate, its chain (intermediates) and its key, and the trust anchor
 * (root) that client certificates must chain to. With |require_client|
 * 0 the client certificate is optional (bootstrap enrollment). */
SSL_CTX *pkid_tls_ctx_new(const char *cert_file, const char *chain_file,
                          const char *key_file, const char *root_file,
                          int require_client, pki_err *err);

/* pkid_tls_peer_leaf returns the verified client leaf certificate's DER
 * (owned by |ssl|) or NULL when the client sent none. */
const uint8_t *pkid_tls_peer_leaf(const SSL *ssl, size_t *out_len);

#endif /* PKID_SERVER_TLS_H */
