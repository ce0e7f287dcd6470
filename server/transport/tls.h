/* tls.h: the server's TLS context: BoringSSL, TLS 1.2 and 1.3, ALPN "h2",
 * and a client certificate required and verified against pkid's root.
 *
 * Only certificates that chain to the root through one of pkid's
 * intermediates can verify, since only they are signed by the root. Who
 * the caller is comes from the leaf (pkid_tls_peer). */
#ifndef PKID_SERVER_TRANSPORT_TLS_H
#define PKID_SERVER_TRANSPORT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lib/err.h"
#include "server/transport/peer.h"

/* pkid_tls_ctx_new makes a server context from PEM files: the server's
 * certificate, its chain (intermediates) and its key, and the trust anchor
 * (root) that client certificates must chain to. With |require_client|
 * 0 the client certificate is optional (bootstrap enrollment). */
SSL_CTX *pkid_tls_ctx_new(const char *cert_file, const char *chain_file,
                          const char *key_file, const char *root_file,
                          int require_client, pki_err *err);

/* pkid_tls_peer fills the certificate fields of |out| from the verified
 * client certificate of |ssl| after its handshake; with none, they stay
 * empty. It fails (PKI_ERR_EXHAUSTED, out of memory) only; a certificate
 * that verified but has no identity gives an empty identity. The caller
 * frees out->leaf. */
int pkid_tls_peer(pkid_peer *out, const SSL *ssl, pki_err *err);

#endif /* PKID_SERVER_TRANSPORT_TLS_H */
