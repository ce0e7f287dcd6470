#include "server/acme/validate.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/obj.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/http_get.h"
#include "lib/sock.h"

static const uint8_t kAlpn[] = {10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};

/* split_address cuts "HOST:PORT" ("[V6]:PORT") into its host and port. */
static int split_address(char *host, size_t host_size, char *port, size_t port_size,
                         const char *address, pki_err *err) {
  const char *colon = strrchr(address, ':');
  const char *h = address;
  size_t hlen = colon != NULL ? (size_t)(colon - address) : 0;
  if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  }
  if (colon == NULL || hlen == 0 || hlen >= host_size || strlen(colon + 1) == 0 ||
      strlen(colon + 1) >= port_size) {
    PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not HOST:PORT", address);
    return 0;
  }
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  snprintf(port, port_size, "%s", colon + 1);
  return 1;
}

/* connect_within connects to |address| ("HOST:PORT", HOST an address)
 * within |timeout_ms| (lib/sock), then makes the socket blocking with that
 * timeout on each read and write, for the SSL's handshake. */
static int connect_within(const char *address, unsigned timeout_ms, pki_err *err) {
  char host[256], port[8];
  if (!split_address(host, sizeof(host), port, sizeof(port), address, err)) return -1;
  int fd = sock_connect_tcp(host, port, sock_deadline(timeout_ms), address, err);
  if (fd < 0) return -1;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

int pkid_acme_http01(const char *name, const char *address, const char *token,
                     const char *key_authorization, unsigned timeout_ms, pki_err *err) {
  /* A token is base64url (RFC 8555 8.1): nothing else goes into the path. */
  if (token[0] == '\0' ||
      strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
          strlen(token)) {
    PKI_ERR(err, PKI_ERR_INVALID, "the challenge token is not base64url");
    return 0;
  }
  char url[1024], host[256], port[8];
  int n = snprintf(url, sizeof(url), "http://%s/.well-known/acme-challenge/%s", name, token);
  if (n < 0 || (size_t)n >= sizeof(url) ||
      !split_address(host, sizeof(host), port, sizeof(port), address, err)) {
    if (n < 0 || (size_t)n >= sizeof(url)) PKI_ERR(err, PKI_ERR_INVALID, "the URL is too long");
    return 0;
  }
  http_get_request req = {.url = url,
                          .max_body = 8192,
                          .timeout_ms = timeout_ms,
                          .connect_host = host,
                          .connect_port = port,
                          .user_agent = "pkid ACME validator"};
  http_get_response resp;
  int ok = http_get(&resp, &req, err);
  if (!ok && err->code != PKI_ERR_UNAVAILABLE) {
    /* Not the network: what came back is not an answer to the challenge. */
    err->code = PKI_ERR_AUTH;
  } else if (ok && resp.status != 200) {
    PKI_ERR(err, PKI_ERR_AUTH, "%s answered HTTP %d, not 200", url, resp.status);
    ok = 0;
  } else if (ok) {
    size_t len = resp.body_len;
    while (len > 0 && strchr(" \t\r\n", resp.body[len - 1]) != NULL) len--;
    ok = len == strlen(key_authorization) &&
         (len == 0 || memcmp(resp.body, key_authorization, len) == 0);
    if (!ok) {
      PKI_ERR(err, PKI_ERR_AUTH, "%s answered something other than the key authorization",
              url);
    }
  }
  http_get_response_cleanup(&resp);
  return ok;
}

/* check_san: exactly one subjectAltName entry, the dNSName |name|. */
static int check_san(X509 *cert, const char *name, pki_err *err) {
  GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  int ok = 0;
  if (sans != NULL && sk_GENERAL_NAME_num(sans) == 1) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, 0);
    if (gn->type == GEN_DNS) {
      const ASN1_IA5STRING *dns = gn->d.dNSName;
      ok = (size_t)ASN1_STRING_length(dns) == strlen(name) &&
           strncasecmp((const char *)ASN1_STRING_get0_data(dns), name, strlen(name)) == 0;
    }
  }
  GENERAL_NAMES_free(sans);
  if (!ok) {
    PKI_ERR(err, PKI_ERR_AUTH,
            "the certificate's subjectAltName is not exactly the dNSName %s (RFC 8737 3)", name);
  }
  return ok;
}

/* check_identifier: a critical acmeIdentifier holding SHA-256(|ka|). */
static int check_identifier(X509 *cert, const char *ka, pki_err *err) {
  /* id-pe-acmeIdentifier (RFC 8737 6.1). */
  ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
  int at = oid != NULL ? X509_get_ext_by_OBJ(cert, oid, -1) : -1;
  int again = at >= 0 ? X509_get_ext_by_OBJ(cert, oid, at) : -1;
  ASN1_OBJECT_free(oid);
  X509_EXTENSION *ext = at >= 0 ? X509_get_ext(cert, at) : NULL;
  if (ext == NULL || again >= 0 || !X509_EXTENSION_get_critical(ext)) {
    PKI_ERR(err, PKI_ERR_AUTH,
            "the certificate has no critical acmeIdentifier extension, or more than one "
            "(RFC 8737 3)");
    return 0;
  }
  const ASN1_OCTET_STRING *value = X509_EXTENSION_get_data(ext);
  CBS cbs, digest;
  CBS_init(&cbs, ASN1_STRING_get0_data(value), (size_t)ASN1_STRING_length(value));
  uint8_t want[SHA256_DIGEST_LENGTH];
  SHA256((const uint8_t *)ka, strlen(ka), want);
  if (!CBS_get_asn1(&cbs, &digest, CBS_ASN1_OCTETSTRING) || CBS_len(&cbs) != 0 ||
      CBS_len(&digest) != sizeof(want) || memcmp(CBS_data(&digest), want, sizeof(want)) != 0) {
    PKI_ERR(err, PKI_ERR_AUTH,
            "the acmeIdentifier is not the SHA-256 of the key authorization (RFC 8737 3)");
    return 0;
  }
  return 1;
}

int pkid_acme_tls_alpn01(const char *name, const char *address, const char *key_authorization,
                         unsigned timeout_ms, pki_err *err) {
  int fd = connect_within(address, timeout_ms, err);
  if (fd < 0) return 0;
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
  X509 *cert = NULL;
  int ok = 0;
  if (ssl == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  /* Only acme-tls/1, so that no other service on the port answers as if
   * for a browser (RFC 8737 3); the certificate is checked below, not by
   * a chain. */
  SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
  /* The challenge certificate proves the key authorization, nothing else,
   * and clients make it with whatever keyUsage: lego's RSA ones have only
   * keyEncipherment. BoringSSL refuses that for a signing key, always in
   * TLS 1.3 and in 1.2 unless told not to; so the validator speaks 1.2,
   * which RFC 8737 3 allows ("TLS 1.2 or later"), without that check. */
  SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
  SSL_set_enforce_rsa_key_usage(ssl, 0);
  if (SSL_set_alpn_protos(ssl, kAlpn, sizeof(kAlpn)) != 0 ||
      !SSL_set_tlsext_host_name(ssl, name) || !SSL_set_fd(ssl, fd)) {
    PKI_ERR_OOM(err);
    goto out;
  }
  int rc = SSL_connect(ssl);
  int saved_errno = errno;
  if (rc != 1) {
    int e = SSL_get_error(ssl, rc);
    /* The socket's timeout: a read or write that waited timeout_ms. */
    if ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: no TLS handshake within %u ms", address, timeout_ms);
    } else {
      char why[160];
      ERR_error_string_n(ERR_peek_error(), why, sizeof(why));
      PKI_ERR(err, PKI_ERR_INVALID, "%s: the TLS handshake failed: %s", address, why);
    }
    goto out;
  }
  const uint8_t *proto;
  unsigned proto_len;
  SSL_get0_alpn_selected(ssl, &proto, &proto_len);
  if (proto_len != sizeof(kAlpn) - 1 || memcmp(proto, kAlpn + 1, proto_len) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s did not negotiate the ALPN protocol acme-tls/1", address);
    goto out;
  }
  cert = SSL_get_peer_certificate(ssl);
  if (cert == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s sent no certificate", address);
    goto out;
  }
  ok = check_san(cert, name, err) && check_identifier(cert, key_authorization, err);
out:
  X509_free(cert);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  close(fd);
  return ok;
}
