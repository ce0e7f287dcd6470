#include "server/transport/tls.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/cert_info.h"

static const uint8_t kAlpnH2[] = {2, 'h', '2'};

/* alpn_select accepts only h2: gRPC runs on HTTP/2 (RFC 7540 3.3). A client
 * that offers no h2 fails the handshake with no_application_protocol. */
static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                       unsigned in_len, void *arg) {
  (void)ssl;
  (void)arg;
  CBS list;
  CBS_init(&list, in, in_len);
  while (CBS_len(&list) > 0) {
    CBS proto;
    if (!CBS_get_u8_length_prefixed(&list, &proto)) break;
    if (CBS_mem_equal(&proto, kAlpnH2 + 1, 2)) {
      *out = CBS_data(&proto);
      *out_len = (uint8_t)CBS_len(&proto);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int tls_fail(pki_err *err, const char *what, const char *file) {
  uint32_t e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  PKI_ERR(err, PKI_ERR_INVALID, "%s %s: %s", what, file, buf);
  return 0;
}

SSL_CTX *pkid_tls_ctx_new(const char *cert_file, const char *chain_file,
                          const char *key_file, const char *root_file,
                          int require_client, pki_err *err) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "SSL_CTX_new failed");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  /* TLS 1.2 suites: ECDHE with AEADs only. */
  if (!SSL_CTX_set_strict_cipher_list(
          ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305")) {
    tls_fail(err, "cipher list", "");
    goto fail;
  }
  if (SSL_CTX_use_certificate_file(ctx, cert_file, SSL_FILETYPE_PEM) != 1) {
    tls_fail(err, "server certificate", cert_file);
    goto fail;
  }
  if (chain_file != NULL) {
    BIO *bio = BIO_new_file(chain_file, "r");
    if (bio == NULL) {
      tls_fail(err, "chain", chain_file);
      goto fail;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
      if (!SSL_CTX_add_extra_chain_cert(ctx, x)) {
        X509_free(x);
        BIO_free(bio);
        tls_fail(err, "chain", chain_file);
        goto fail;
      }
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the file ends the loop with an error */
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
      !SSL_CTX_check_private_key(ctx)) {
    tls_fail(err, "server key", key_file);
    goto fail;
  }
  if (SSL_CTX_load_verify_locations(ctx, root_file, NULL) != 1) {
    tls_fail(err, "trust anchor", root_file);
    goto fail;
  }
  SSL_CTX_set_verify(ctx,
                     SSL_VERIFY_PEER | (require_client ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                     NULL);
  SSL_CTX_set_verify_depth(ctx, 4);
  SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  /* Sessions would let a client resume without showing its certificate
   * again, after a revocation; pkid's clients keep connections open instead. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

int pkid_tls_peer(pkid_peer *out, const SSL *ssl, pki_err *err) {
  const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
  if (chain == NULL || sk_CRYPTO_BUFFER_num(chain) == 0) return 1;
  const CRYPTO_BUFFER *leaf = sk_CRYPTO_BUFFER_value(chain, 0);
  size_t len = CRYPTO_BUFFER_len(leaf);
  out->leaf = malloc(len);
  if (out->leaf == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(out->leaf, CRYPTO_BUFFER_data(leaf), len);
  out->leaf_len = len;
  pki_cert_info info;
  pki_err parse_err;
  if (!pki_cert_info_parse(&info, out->leaf, len, &parse_err)) {
    /* BoringSSL verified it, pkid's stricter parser refuses it: it names no
     * identity, so it authorizes nothing. */
    return 1;
  }
  const char *id = pki_cert_info_identity(&info);
  if (id != NULL && strlen(id) < sizeof(out->identity)) {
    memcpy(out->identity, id, strlen(id) + 1);
  }
  /* The serial without a sign octet, as the status index keys it. */
  CBS serial = info.serial;
  if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1);
  if (CBS_len(&serial) <= sizeof(out->serial.bytes)) {
    memcpy(out->serial.bytes, CBS_data(&serial), CBS_len(&serial));
    out->serial.len = CBS_len(&serial);
  }
  if (info.has_aki && CBS_len(&info.aki) <= sizeof(out->issuer_key_id)) {
    memcpy(out->issuer_key_id, CBS_data(&info.aki), CBS_len(&info.aki));
    out->issuer_key_id_len = CBS_len(&info.aki);
  }
  out->not_before = info.not_before;
  out->not_after = info.not_after;
  pki_cert_info_cleanup(&info);
  return 1;
}
