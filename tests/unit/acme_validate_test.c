/* acme_validate_test: server/acme/validate against servers on 127.0.0.1 in
 * another thread.
 *  - http-01 (RFC 8555 8.3): the request's path and Host; the key
 *    authorization with a newline after it; another body; a 404; a body
 *    over the limit; a server that never answers; a token that is not
 *    base64url, refused before connecting.
 *  - tls-alpn-01 (RFC 8737), a BoringSSL server presenting the certificate
 *    of each case: the right one; a wrong digest; the extension not
 *    critical; two SANs; another name; no ALPN; and no server at all, or
 *    one that never answers the handshake (timeouts). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/key.h"
#include "server/acme/validate.h"
#include "tests/unit/test.h"

#define NAME "postgres.cybersec-framework.local"
#define KEY_AUTHORIZATION "token-abc.thumbprint-xyz"

typedef struct server_case {
  const char *sans;     /* subjectAltName value, OpenSSL's text form */
  const char *ka;       /* the key authorization whose digest it carries */
  int critical;         /* acmeIdentifier critical */
  int alpn;             /* select acme-tls/1 */
  int silent;           /* accept and never answer */
} server_case;

static X509 *make_cert(EVP_PKEY *key, const server_case *c) {
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"acme", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_set_pubkey(x, key);
  X509_EXTENSION *san = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, c->sans);
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  /* acmeIdentifier: OCTET STRING (SIZE (32)) of SHA-256(key authorization). */
  uint8_t digest[32], der[40];
  SHA256((const uint8_t *)c->ka, strlen(c->ka), digest);
  CBB cbb;
  size_t der_len;
  CBB_init_fixed(&cbb, der, sizeof(der));
  CBB_add_asn1_octet_string(&cbb, digest, sizeof(digest));
  CBB_finish(&cbb, NULL, &der_len);
  ASN1_OCTET_STRING *value = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(value, der, (int)der_len);
  ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
  X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, oid, c->critical, value);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  ASN1_OBJECT_free(oid);
  ASN1_OCTET_STRING_free(value);
  X509_sign(x, key, EVP_sha256());
  return x;
}

static int select_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                       unsigned in_len, void *arg) {
  (void)ssl;
  (void)arg;
  CBS list, proto;
  CBS_init(&list, in, in_len);
  while (CBS_get_u8_length_prefixed(&list, &proto)) {
    if (CBS_len(&proto) == 10 && memcmp(CBS_data(&proto), "acme-tls/1", 10) == 0) {
      *out = CBS_data(&proto);
      *out_len = 10;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

typedef struct server {
  int listener;
  int port;
  const server_case *c;
  pthread_t thread;
} server;

static void *serve_one(void *arg) {
  server *s = arg;
  int fd = accept(s->listener, NULL, NULL);
  if (fd < 0) return NULL;
  if (s->c->silent) {
    char buf[512];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
    close(fd);
    return NULL;
  }
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 0, &err);
  X509 *cert = make_cert(key, s->c);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(ctx, cert);
  SSL_CTX_use_PrivateKey(ctx, key);
  if (s->c->alpn) SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    char buf[64];
    SSL_read(ssl, buf, sizeof(buf)); /* until the validator closes */
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  X509_free(cert);
  EVP_PKEY_free(key);
  close(fd);
  return NULL;
}

static int start(server *s, const server_case *c) {
  s->c = c;
  s->listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(s->listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
      listen(s->listener, 4) != 0 ||
      getsockname(s->listener, (struct sockaddr *)&addr, &len) != 0) {
    return 0;
  }
  s->port = ntohs(addr.sin_port);
  return pthread_create(&s->thread, NULL, serve_one, s) == 0;
}

static void finish(server *s) {
  pthread_join(s->thread, NULL);
  close(s->listener);
}

/* expect checks a validator's outcome: success when |code| is 0, else
 * that error, its message holding |words|. */
static void expect(int ok, const pki_err *err, pki_err_code code, const char *words) {
  if (code == 0) {
    if (!ok) fprintf(stderr, "  %s\n", err->msg);
    CHECK(ok);
    return;
  }
  CHECK(!ok);
  if (!ok && (err->code != code || strstr(err->msg, words) == NULL)) {
    fprintf(stderr, "  got %d '%s', want %d '%s'\n", err->code, err->msg, code, words);
    CHECK(0);
  }
}

/* check runs the validator against |c| and expects |code| (0: success). */
static void check(const server_case *c, pki_err_code code, const char *words) {
  server s;
  REQUIRE(start(&s, c));
  char address[64];
  snprintf(address, sizeof(address), "127.0.0.1:%d", s.port);
  pki_err err;
  int ok = pkid_acme_tls_alpn01(NAME, address, KEY_AUTHORIZATION, 1000, &err);
  finish(&s);
  expect(ok, &err, code, words);
}

TEST(the_right_certificate) {
  check(&(server_case){"DNS:" NAME, KEY_AUTHORIZATION, 1, 1, 0}, 0, "");
}

TEST(wrong_certificates) {
  check(&(server_case){"DNS:" NAME, "another.authorization", 1, 1, 0}, PKI_ERR_AUTH,
        "not the SHA-256 of the key authorization");
  check(&(server_case){"DNS:" NAME, KEY_AUTHORIZATION, 0, 1, 0}, PKI_ERR_AUTH,
        "no critical acmeIdentifier");
  check(&(server_case){"DNS:" NAME ",DNS:other.cybersec-framework.local", KEY_AUTHORIZATION, 1,
                       1, 0},
        PKI_ERR_AUTH, "not exactly the dNSName");
  check(&(server_case){"DNS:other.cybersec-framework.local", KEY_AUTHORIZATION, 1, 1, 0},
        PKI_ERR_AUTH, "not exactly the dNSName");
}

TEST(no_acme_tls_1) {
  check(&(server_case){"DNS:" NAME, KEY_AUTHORIZATION, 1, 0, 0}, PKI_ERR_INVALID,
        "did not negotiate the ALPN protocol acme-tls/1");
}

TEST(no_server_or_a_silent_one) {
  /* A port nothing listens on: bound, then closed. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
  REQUIRE(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
  close(fd);
  char address[64];
  snprintf(address, sizeof(address), "127.0.0.1:%d", ntohs(addr.sin_port));
  pki_err err;
  CHECK(!pkid_acme_tls_alpn01(NAME, address, KEY_AUTHORIZATION, 1000, &err));
  CHECK(err.code == PKI_ERR_UNAVAILABLE && strstr(err.msg, "connect") != NULL);
  /* Accepts, never answers: the handshake's read times out. */
  check(&(server_case){"DNS:" NAME, KEY_AUTHORIZATION, 1, 1, 1}, PKI_ERR_UNAVAILABLE,
        "no TLS handshake within 1000 ms");
}

/* --- http-01 ------------------------------------------------------------ */

typedef struct http_server {
  int listener, port;
  const char *response; /* NULL: never answer */
  char request[2048];
  pthread_t thread;
} http_server;

static void *http_serve_one(void *arg) {
  http_server *s = arg;
  int fd = accept(s->listener, NULL, NULL);
  if (fd < 0) return NULL;
  size_t got = 0;
  while (got < sizeof(s->request) - 1 && strstr(s->request, "\r\n\r\n") == NULL) {
    ssize_t n = recv(fd, s->request + got, sizeof(s->request) - 1 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
    s->request[got] = '\0';
  }
  if (s->response != NULL) {
    send(fd, s->response, strlen(s->response), MSG_NOSIGNAL);
  } else {
    char buf[64];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
  }
  close(fd);
  return NULL;
}

/* http_check answers the validator with |response| and expects |code|. */
static void http_check(const char *response, pki_err_code code, const char *words) {
  http_server s;
  memset(&s, 0, sizeof(s));
  s.response = response;
  s.listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(bind(s.listener, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
          listen(s.listener, 4) == 0 &&
          getsockname(s.listener, (struct sockaddr *)&addr, &len) == 0);
  REQUIRE(pthread_create(&s.thread, NULL, http_serve_one, &s) == 0);
  char address[64];
  snprintf(address, sizeof(address), "127.0.0.1:%d", ntohs(addr.sin_port));
  pki_err err;
  int ok = pkid_acme_http01(NAME, address, "tok_en-123", KEY_AUTHORIZATION, 1000, &err);
  pthread_join(s.thread, NULL);
  close(s.listener);
  /* RFC 8555 8.3: the path, and the name in Host (not the address). */
  CHECK(strncmp(s.request, "GET /.well-known/acme-challenge/tok_en-123 HTTP/1.1\r\n", 53) == 0);
  CHECK(strstr(s.request, "\r\nHost: " NAME "\r\n") != NULL);
  expect(ok, &err, code, words);
}

TEST(http01) {
  http_check("HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n" KEY_AUTHORIZATION "\n", 0, "");
  http_check("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsomeone", PKI_ERR_AUTH,
             "something other than the key authorization");
  http_check("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", PKI_ERR_AUTH, "HTTP 404");
  static char big[9200];
  int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n");
  memset(big + n, 'x', 9000);
  big[n + 9000] = '\0';
  http_check(big, PKI_ERR_AUTH, "");
  http_check("not HTTP at all\r\n\r\n", PKI_ERR_AUTH, "");
  http_check(NULL, PKI_ERR_UNAVAILABLE, "");
  pki_err err;
  CHECK(!pkid_acme_http01(NAME, "127.0.0.1:1", "../../etc", KEY_AUTHORIZATION, 1000, &err) &&
        err.code == PKI_ERR_INVALID && strstr(err.msg, "base64url") != NULL);
}

int main(void) {
  RUN(http01);
  RUN(the_right_certificate);
  RUN(wrong_certificates);
  RUN(no_acme_tls_1);
  RUN(no_server_or_a_silent_one);
  return test_finish();
}
