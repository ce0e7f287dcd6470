/* siem.c: the SIEM feed (see siem.h). */
#include "server/audit/siem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/audit.h"
#include "lib/crc32c.h"
#include "lib/file.h"
#include "lib/hostport.h"
#include "lib/log.h"
#include "lib/record.h"
#include "lib/text.h"
#include "server/metrics/metrics.h"

#define CONFIRM_MS 500     /* healthy this long after the send queue emptied */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000
#define CONNECT_MS 5000    /* TCP connect and TLS handshake, each */
#define WRITE_MS 10000     /* a collector that takes nothing for this long is gone */
#define STOP_MS 3000       /* the drain at stop */
#define BATCH 256          /* records read and written at a time */
#define PEN "32473"        /* RFC 5612's documentation PEN: a placeholder */

struct pkid_siem {
  char collector[PKI_HOSTPORT_MAX], name[256], hostname[256];
  char ca_file[4096], cert_file[4096], key_file[4096];
  char journal_dir[4096], cursor_path[4200];
  uint16_t node;
  long pid;
  struct sockaddr_storage addr;
  SSL_CTX *ctx;
  pthread_t thread;
  int thread_started;
  /* Under mu: the durable end, and stop. */
  pthread_mutex_t mu;
  pthread_cond_t cond;
  pki_journal_pos end;
  int stop;
  /* The feed thread's. */
  pki_journal_pos cursor;  /* confirmed: what siem-cursor says */
  pki_journal_pos sent;    /* after the last record written on this connection */
  int candidate;           /* the send queue was empty with |cand| sent, at cand_ms */
  pki_journal_pos cand;
  uint64_t cand_ms;
  int fd;
  SSL *ssl;
  uint64_t next_connect_ms, retry_ms, last_error_ms, last_read_error_ms;
  uint8_t *buf;
  size_t buf_len, buf_cap;
  _Atomic int connected;
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the cursor file ---- */

static const char kCursorMagic[] = "pkid-siem-cursor 1\n";

size_t pkid_siem_cursor_format(char *out, const pki_journal_pos *pos) {
  char chain[2 * PKI_JOURNAL_HASH_LEN + 1];
  pki_text_hex(chain, pos->chain, PKI_JOURNAL_HASH_LEN);
  int n = snprintf(out, PKID_SIEM_CURSOR_MAX,
                   "%ssegment %" PRIu64 "\noffset %" PRIu64 "\nnext_seq %" PRIu64
                   "\nchain %s\n",
                   kCursorMagic, pos->segment, pos->offset, pos->next_seq, chain);
  uint32_t crc = pki_crc32c(0, out, (size_t)n);
  n += snprintf(out + n, PKID_SIEM_CURSOR_MAX - (size_t)n, "crc32c %08x\n", crc);
  return (size_t)n;
}

/* get_line takes "KEY VALUE\n" at |*p| into |value| (NUL-terminated; a
 * value holding a NUL is refused). */
static int get_line(const char **p, const char *end, const char *key, char *value,
                    size_t size) {
  size_t klen = strlen(key);
  if ((size_t)(end - *p) <= klen || memcmp(*p, key, klen) != 0 || (*p)[klen] != ' ') return 0;
  const char *v = *p + klen + 1;
  const char *nl = memchr(v, '\n', (size_t)(end - v));
  if (nl == NULL || nl == v || (size_t)(nl - v) >= size) return 0;
  /* A NUL inside the value would end it early for the readers below. */
  if (memchr(v, '\0', (size_t)(nl - v)) != NULL) return 0;
  memcpy(value, v, (size_t)(nl - v));
  value[nl - v] = '\0';
  *p = nl + 1;
  return 1;
}

int pkid_siem_cursor_parse(const uint8_t *data, size_t len, pki_journal_pos *out, pki_err *err) {
  const char *p = (const char *)data, *end = p + len;
  char v[2 * PKI_JOURNAL_HASH_LEN + 2];
  pki_journal_pos pos;
  memset(&pos, 0, sizeof(pos));
  uint8_t crc[4];
  const char *body_end = NULL;
  int ok = len <= PKID_SIEM_CURSOR_MAX && len > sizeof(kCursorMagic) - 1 &&
           memcmp(p, kCursorMagic, sizeof(kCursorMagic) - 1) == 0;
  if (ok) p += sizeof(kCursorMagic) - 1;
  ok = ok && get_line(&p, end, "segment", v, sizeof(v)) && pki_text_u64(v, &pos.segment) &&
       get_line(&p, end, "offset", v, sizeof(v)) && pki_text_u64(v, &pos.offset) &&
       get_line(&p, end, "next_seq", v, sizeof(v)) && pki_text_u64(v, &pos.next_seq) &&
       get_line(&p, end, "chain", v, sizeof(v)) &&
       pki_text_unhex(v, pos.chain, sizeof(pos.chain));
  if (ok) body_end = p;
  ok = ok && get_line(&p, end, "crc32c", v, sizeof(v)) && pki_text_unhex(v, crc, 4) && p == end;
  if (!ok) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a SIEM cursor (pkid-siem-cursor 1)");
    return 0;
  }
  uint32_t want = (uint32_t)crc[0] << 24 | (uint32_t)crc[1] << 16 | (uint32_t)crc[2] << 8 | crc[3];
  if (pki_crc32c(0, data, (size_t)(body_end - (const char *)data)) != want) {
    PKI_ERR(err, PKI_ERR_INVALID, "the SIEM cursor's CRC does not match");
    return 0;
  }
  if (pos.segment == 0 || pos.next_seq == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "the SIEM cursor names segment or seq 0");
    return 0;
  }
  *out = pos;
  return 1;
}

/* save_cursor writes the confirmed cursor; a failure is logged (the
 * cursor in memory goes on, and a restart sends a little more again). */
static void save_cursor(pkid_siem *s) {
  char text[PKID_SIEM_CURSOR_MAX];
  size_t n = pkid_siem_cursor_format(text, &s->cursor);
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_write_atomic(s->cursor_path, text, n, 0644, &err)) {
    pki_log("error", "siem_cursor_not_saved", "file", s->cursor_path, "reason", err.msg, NULL);
  }
}

/* ---- the messages ---- */

static int reserve(uint8_t **buf, size_t *len, size_t *cap, size_t more, pki_err *err) {
  if (*cap - *len >= more) return 1;
  size_t want = *cap > 0 ? *cap : 4096;
  while (want - *len < more) want *= 2;
  uint8_t *b = realloc(*buf, want);
  if (b == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  *buf = b;
  *cap = want;
  return 1;
}

int pkid_siem_format_record(uint8_t **buf, size_t *len, size_t *cap,
                            const pki_journal_record *r, const char *hostname, long pid,
                            uint16_t node, pki_err *err) {
  pki_parsed_record p;
  pki_err perr;
  pki_err_clear(&perr);
  char *json = NULL, fallback[160], kind_buf[32];
  size_t json_len = 0;
  const char *kind, *outcome;
  /* The record's time, Unix ms, as RFC 5424's TIMESTAMP and RFC 3339's. */
  time_t secs = (time_t)(r->time / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[40];
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (unsigned)(r->time % 1000));
  if (pki_record_parse(r, &p, &perr)) {
    if (!pki_audit_json(r, &p, &json, &json_len, err)) return 0;
    kind = pki_audit_kind_name(&p, kind_buf, sizeof(kind_buf));
    outcome = pki_audit_outcome(&p);
  } else {
    /* A newer pkid's record: say it is there, so the seqs have no gap. */
    snprintf(kind_buf, sizeof(kind_buf), "record_%u", r->type);
    json_len = (size_t)snprintf(fallback, sizeof(fallback),
                                "{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"kind\":\"%s\"}", r->seq,
                                ts, kind_buf);
    kind = kind_buf;
    outcome = "ok";
  }
  const char *msg = json != NULL ? json : fallback;
  int utf8 = 0;
  for (size_t i = 0; i < json_len; i++) utf8 |= (uint8_t)msg[i] >= 0x80;
  int severity = strcmp(outcome, "ok") == 0 ? 5 : 4; /* notice, warning */
  char head[512];
  /* MSGID is at most 32 printable US-ASCII octets (RFC 5424 section 6). */
  int head_len = snprintf(head, sizeof(head),
                          "<%d>1 %s %s pkid %ld %.32s [pkid@" PEN " seq=\"%" PRIu64
                          "\" node=\"%u\"] %s",
                          10 * 8 + severity, ts, hostname, pid, kind, r->seq, node,
                          utf8 ? "\xef\xbb\xbf" : "");
  size_t msg_len = (size_t)head_len + json_len;
  char frame[24];
  int frame_len = snprintf(frame, sizeof(frame), "%zu ", msg_len);
  int ok = reserve(buf, len, cap, (size_t)frame_len + msg_len, err);
  if (ok) {
    memcpy(*buf + *len, frame, (size_t)frame_len);
    memcpy(*buf + *len + frame_len, head, (size_t)head_len);
    memcpy(*buf + *len + frame_len + head_len, msg, json_len);
    *len += (size_t)frame_len + msg_len;
  }
  OPENSSL_free(json);
  return ok;
}

/* ---- checks at start ---- */

static int readable(const char *path, const char *what, pki_err *err) {
  if (path == NULL || path[0] == '\0') {
    PKI_ERR(err, PKI_ERR_INVALID, "--siem needs %s", what);
    return 0;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, errno == ENOENT ? PKI_ERR_NOT_FOUND : PKI_ERR_IO, "%s %s: %s", what, path,
            strerror(errno));
    return 0;
  }
  close(fd);
  return 1;
}

static EVP_PKEY *read_key(const char *path) {
  BIO *bio = BIO_new_file(path, "r");
  EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  return key;
}

/* new_ctx makes the client context: TLS 1.2 or later, the collector
 * verified against the CA file, the client certificate and key. */
static SSL_CTX *new_ctx(const pkid_siem_options *o, pki_err *err) {
  if (!readable(o->ca_file, "--siem-ca (the collector's CA file)", err) ||
      !readable(o->cert_file, "--siem-cert (the client certificate)", err) ||
      !readable(o->key_file, "--siem-key (the client key)", err)) {
    return NULL;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  EVP_PKEY *key = NULL;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "--siem-ca %s: no CA certificate (PEM) in it",
                   o->ca_file);
  } else if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "--siem-cert %s: not a PEM certificate",
                   o->cert_file);
  } else if ((key = read_key(o->key_file)) == NULL) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "--siem-key %s: not a PEM private key", o->key_file);
  } else if (!X509_check_private_key(SSL_CTX_get0_certificate(ctx), key)) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "--siem-key %s does not match the certificate in %s",
                   o->key_file, o->cert_file);
  } else if (!SSL_CTX_use_PrivateKey(ctx, key)) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "--siem-key %s: not usable", o->key_file);
  } else {
    EVP_PKEY_free(key);
    return ctx;
  }
  EVP_PKEY_free(key);
  SSL_CTX_free(ctx);
  return NULL;
}

/* host_of writes the HOST of "HOST:PORT" ("[::1]:514": "::1"). */
static void host_of(char *out, size_t size, const char *hostport) {
  const char *start = hostport, *colon = strrchr(hostport, ':');
  size_t n = colon != NULL ? (size_t)(colon - hostport) : strlen(hostport);
  if (n >= 2 && start[0] == '[' && start[n - 1] == ']') {
    start++;
    n -= 2;
  }
  snprintf(out, size, "%.*s", (int)n, start);
}

int pkid_siem_check(const pkid_siem_options *o, pki_err *err) {
  struct sockaddr_storage addr;
  if (o->collector == NULL || !pki_hostport_parse(&addr, o->collector, err)) {
    if (o->collector == NULL) PKI_ERR(err, PKI_ERR_INVALID, "--siem needs HOST:PORT");
    pki_err_prefix(err, "--siem: ");
    return 0;
  }
  if (((struct sockaddr_in *)&addr)->sin_port == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "--siem %s: the collector's port cannot be 0", o->collector);
    return 0;
  }
  SSL_CTX *ctx = new_ctx(o, err);
  SSL_CTX_free(ctx);
  return ctx != NULL;
}

/* ---- the connection ---- */

static void set_metrics(pkid_siem *s, uint64_t sent) {
  pthread_mutex_lock(&s->mu);
  uint64_t end = s->end.next_seq;
  pthread_mutex_unlock(&s->mu);
  uint64_t lag = end > s->cursor.next_seq ? end - s->cursor.next_seq : 0;
  pkid_metrics_siem(atomic_load(&s->connected), lag, sent);
}

/* wait_fd polls |fd| for |events| until the monotonic |deadline|. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, 1, (int)(deadline - now));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return 0;
  }
}

/* ssl_reason says why a TLS call failed: the certificate check first. */
static void ssl_reason(pkid_siem *s, int rc, const char *what, pki_err *err) {
  long v = s->ssl != NULL ? SSL_get_verify_result(s->ssl) : X509_V_OK;
  int e = SSL_get_error(s->ssl, rc);
  if (v != X509_V_OK) {
    PKI_ERR(err, PKI_ERR_AUTH, "%s: the collector's certificate does not verify for %s: %s",
            what, s->name, X509_verify_cert_error_string(v));
  } else if (e == SSL_ERROR_ZERO_RETURN) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: the collector closed the connection", what);
  } else if (e == SSL_ERROR_SYSCALL) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: %s", what,
            errno != 0 ? strerror(errno) : "the collector closed the connection");
  } else {
    char buf[256];
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s: %s", what, buf);
  }
  ERR_clear_error();
}

static void disconnect(pkid_siem *s, int clean) {
  if (s->ssl != NULL) {
    if (clean) SSL_shutdown(s->ssl); /* close_notify, not waiting for the reply */
    SSL_free(s->ssl);
    s->ssl = NULL;
  }
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->candidate = 0;
  atomic_store(&s->connected, 0);
}

static int do_connect(pkid_siem *s, pki_err *err) {
  socklen_t alen = s->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in);
  s->fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "socket: %s", strerror(errno));
    return 0;
  }
  int one = 1;
  setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  uint64_t deadline = now_ms() + CONNECT_MS;
  if (connect(s->fd, (struct sockaddr *)&s->addr, alen) != 0) {
    int soerr = errno;
    if (soerr == EINPROGRESS) {
      socklen_t l = sizeof(soerr);
      if (!wait_fd(s->fd, POLLOUT, deadline)) soerr = ETIMEDOUT;
      else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0) soerr = errno;
    }
    if (soerr != 0) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "connect %s: %s", s->collector, strerror(soerr));
      return 0;
    }
  }
  s->ssl = SSL_new(s->ctx);
  if (s->ssl == NULL || !SSL_set_fd(s->ssl, s->fd)) {
    PKI_ERR_OOM(err);
    return 0;
  }
  SSL_set_connect_state(s->ssl);
  X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
  uint8_t ip[16];
  int is_ip = inet_pton(AF_INET, s->name, ip) == 1 || inet_pton(AF_INET6, s->name, ip) == 1;
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, s->name)
                 : X509_VERIFY_PARAM_set1_host(param, s->name, strlen(s->name)) &&
                       SSL_set_tlsext_host_name(s->ssl, s->name);
  if (!ok) {
    PKI_ERR(err, PKI_ERR_INVALID, "--siem-name %s: not a name to verify", s->name);
    return 0;
  }
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  deadline = now_ms() + CONNECT_MS;
  for (;;) {
    errno = 0;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) break;
    int e = SSL_get_error(s->ssl, rc);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0) {
      ssl_reason(s, rc, "TLS handshake", err);
      return 0;
    }
    if (!wait_fd(s->fd, ev, deadline)) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "TLS handshake with %s: timed out", s->collector);
      return 0;
    }
  }
  return 1;
}

/* write_all writes |len| octets; the collector has WRITE_MS to take each
 * part of them. */
static int write_all(pkid_siem *s, const uint8_t *data, size_t len, pki_err *err) {
  size_t off = 0;
  while (off < len) {
    size_t n = len - off > (1u << 20) ? (1u << 20) : len - off;
    errno = 0;
    int rc = SSL_write(s->ssl, data + off, (int)n);
    if (rc > 0) {
      off += (size_t)rc;
      continue;
    }
    int e = SSL_get_error(s->ssl, rc);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev == 0) {
      ssl_reason(s, rc, "send", err);
      return 0;
    }
    if (!wait_fd(s->fd, ev, now_ms() + WRITE_MS)) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "send: the collector took nothing for %d s",
              WRITE_MS / 1000);
      return 0;
    }
  }
  return 1;
}

/* healthy reads what the collector sent (nothing but TLS's own messages,
 * such as session tickets, is expected) and reports whether the
 * connection is still up: no close_notify, reset or error. */
static int healthy(pkid_siem *s, pki_err *err) {
  uint8_t junk[256];
  for (;;) {
    errno = 0;
    int rc = SSL_read(s->ssl, junk, sizeof(junk));
    if (rc > 0) continue; /* a collector has nothing to say: dropped */
    int e = SSL_get_error(s->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_WANT_WRITE) break;
    ssl_reason(s, rc, "connection", err);
    return 0;
  }
  struct pollfd p = {.fd = s->fd, .events = 0};
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0) {
    int soerr = 0;
    socklen_t l = sizeof(soerr);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "connection: %s",
            soerr != 0 ? strerror(soerr) : "closed by the collector");
    return 0;
  }
  return 1;
}

/* fail drops the connection after an error and schedules the next try
 * with backoff; logged when failures begin, then once a minute. */
static void fail(pkid_siem *s, const pki_err *err) {
  uint64_t now = now_ms();
  int was = atomic_load(&s->connected);
  if (was) {
    char unconfirmed[24];
    snprintf(unconfirmed, sizeof(unconfirmed), "%" PRIu64,
             s->sent.next_seq - s->cursor.next_seq);
    pki_log("warn", "siem_disconnected", "collector", s->collector, "reason", err->msg,
            "unconfirmed", unconfirmed, NULL);
    s->last_error_ms = now;
  } else if (s->last_error_ms == 0 || now - s->last_error_ms >= 60000) {
    pki_log("warn", "siem_unavailable", "collector", s->collector, "reason", err->msg, NULL);
    s->last_error_ms = now;
  }
  disconnect(s, 0);
  s->retry_ms = s->retry_ms == 0 ? RETRY_MIN_MS : s->retry_ms * 2;
  if (s->retry_ms > RETRY_MAX_MS) s->retry_ms = RETRY_MAX_MS;
  s->next_connect_ms = now + s->retry_ms;
}

/* ---- sending ---- */

static int collect(void *ctx, const pki_journal_record *r, pki_err *err) {
  pkid_siem *s = ctx;
  return pkid_siem_format_record(&s->buf, &s->buf_len, &s->buf_cap, r, s->hostname, s->pid,
                                 s->node, err);
}

/* send_batch writes the next records up to |end|; |*n| says how many. 0
 * with PKI_ERR_INVALID or PKI_ERR_IO: the journal did not read back (the
 * connection is fine); otherwise the connection failed. */
static int send_batch(pkid_siem *s, const pki_journal_pos *end, size_t *n, int *journal_error,
                      pki_err *err) {
  *n = 0;
  *journal_error = 0;
  s->buf_len = 0;
  pki_journal_pos after = s->sent;
  if (!pki_journal_tail_read(s->journal_dir, &after, end, BATCH, collect, s, n, err)) {
    *journal_error = 1;
    return 0;
  }
  if (*n == 0 && after.next_seq == s->sent.next_seq) {
    s->sent = after; /* perhaps into the next segment */
    return 1;
  }
  if (!write_all(s, s->buf, s->buf_len, err)) return 0;
  s->sent = after;
  return 1;
}

/* confirm applies the confirmation rule (siem.h): a candidate is taken
 * when the send queue is empty, and becomes the cursor once the
 * connection has stayed healthy CONFIRM_MS. */
static int confirm(pkid_siem *s, pki_err *err) {
  if (!healthy(s, err)) return 0;
  uint64_t now = now_ms();
  if (s->candidate && now - s->cand_ms >= CONFIRM_MS) {
    s->cursor = s->cand;
    s->candidate = 0;
    save_cursor(s);
  }
  if (!s->candidate && s->sent.next_seq > s->cursor.next_seq) {
    int outq = -1;
    if (ioctl(s->fd, SIOCOUTQ, &outq) == 0 && outq == 0) {
      s->candidate = 1;
      s->cand = s->sent;
      s->cand_ms = now;
    }
  }
  return 1;
}

/* step connects if due, checks the connection, confirms and sends one
 * batch; 1 when it sent something (more may wait). */
static int step(pkid_siem *s, uint64_t *sent_total) {
  pki_err err;
  pki_err_clear(&err);
  if (s->ssl == NULL) {
    if (now_ms() < s->next_connect_ms) return 0;
    if (!do_connect(s, &err)) {
      fail(s, &err);
      return 0;
    }
    atomic_store(&s->connected, 1);
    s->retry_ms = 0;
    s->sent = s->cursor; /* what was not confirmed goes again */
    s->candidate = 0;
    char from[24];
    snprintf(from, sizeof(from), "%" PRIu64, s->cursor.next_seq);
    pki_log("info", "siem_connected", "collector", s->collector, "name", s->name, "from_seq",
            from, "tls", SSL_get_version(s->ssl), NULL);
  }
  if (!confirm(s, &err)) {
    fail(s, &err);
    return 0;
  }
  pthread_mutex_lock(&s->mu);
  pki_journal_pos end = s->end;
  pthread_mutex_unlock(&s->mu);
  if (s->sent.next_seq >= end.next_seq) return 0;
  size_t n = 0;
  int journal_error = 0;
  if (!send_batch(s, &end, &n, &journal_error, &err)) {
    if (!journal_error) {
      fail(s, &err);
      return 0;
    }
    uint64_t now = now_ms();
    if (s->last_read_error_ms == 0 || now - s->last_read_error_ms >= 60000) {
      pki_log("error", "siem_read_failed", "dir", s->journal_dir, "reason", err.msg, NULL);
      s->last_read_error_ms = now;
    }
    return 0;
  }
  *sent_total += n;
  return n > 0;
}

static void *run(void *arg) {
  pthread_setname_np(pthread_self(), "pkid-siem"); /* top -H, perf */
  pkid_siem *s = arg;
  for (;;) {
    uint64_t sent = 0;
    int more = step(s, &sent);
    set_metrics(s, sent);
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
      pthread_mutex_unlock(&s->mu);
      break;
    }
    if (!more) {
      /* Idle and confirmed: wake for a commit or every 200 ms (the
       * connection's health); confirming or reconnecting: every 50 ms. */
      int idle = s->ssl != NULL && s->end.next_seq == s->cursor.next_seq;
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_nsec += (idle ? 200 : 50) * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->cond, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
  }
  /* Stopping: send what is durable and wait for its confirmation, for a
   * few seconds at most; a collector that is down is not waited for. */
  for (uint64_t until = now_ms() + STOP_MS; s->ssl != NULL && now_ms() < until;) {
    uint64_t sent = 0;
    int more = step(s, &sent);
    set_metrics(s, sent);
    pthread_mutex_lock(&s->mu);
    int done = s->cursor.next_seq >= s->end.next_seq;
    pthread_mutex_unlock(&s->mu);
    if (done) break;
    if (!more) {
      struct timespec ts = {0, 20 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  if (s->ssl != NULL) {
    char unconfirmed[24];
    snprintf(unconfirmed, sizeof(unconfirmed), "%" PRIu64,
             s->sent.next_seq - s->cursor.next_seq);
    pki_log("info", "siem_disconnected", "collector", s->collector, "reason", "stopping",
            "unconfirmed", unconfirmed, NULL);
  }
  disconnect(s, 1);
  set_metrics(s, 0);
  return NULL;
}

/* ---- life ---- */

static int accept_any(void *ctx, const pki_journal_record *r, pki_err *err) {
  (void)ctx;
  (void)r;
  (void)err;
  return 1;
}

/* load_cursor reads JOURNAL/siem-cursor and checks it against the journal
 * up to |end|; anything but a cursor that matches starts from the first
 * record. */
static void load_cursor(pkid_siem *s, const pki_journal_pos *end) {
  pki_journal_pos_start(&s->cursor);
  uint8_t *data = NULL;
  size_t len = 0;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&data, &len, s->cursor_path, PKID_SIEM_CURSOR_MAX, &err)) {
    if (err.code == PKI_ERR_NOT_FOUND) {
      pki_log("info", "siem_cursor_new", "file", s->cursor_path, "from_seq", "1", NULL);
    } else {
      pki_log("error", "siem_cursor_mismatch", "file", s->cursor_path, "reason", err.msg,
              "action", "sending again from the journal's first record", NULL);
    }
    return;
  }
  pki_journal_pos pos;
  int ok = pkid_siem_cursor_parse(data, len, &pos, &err);
  free(data);
  if (ok) {
    if (pos.next_seq > end->next_seq) {
      PKI_ERR(&err, PKI_ERR_INVALID, "it is at seq %" PRIu64 ", past the journal's end %" PRIu64,
              pos.next_seq, end->next_seq);
      ok = 0;
    } else if (pos.next_seq == end->next_seq) {
      ok = memcmp(pos.chain, end->chain, PKI_JOURNAL_HASH_LEN) == 0;
      if (!ok) PKI_ERR(&err, PKI_ERR_INVALID, "its chain hash is not the journal's at its end");
    } else {
      /* The record at the cursor must have its seq and link to its chain
       * (journal_tail checks both). */
      pki_journal_pos probe = pos;
      size_t n = 0;
      ok = pki_journal_tail_read(s->journal_dir, &probe, end, 1, accept_any, NULL, &n, &err) &&
           n == 1;
      if (!ok && err.code == PKI_OK) {
        PKI_ERR(&err, PKI_ERR_INVALID, "no record at its position");
      }
    }
  }
  if (!ok) {
    pki_log("error", "siem_cursor_mismatch", "file", s->cursor_path, "reason", err.msg,
            "action", "sending again from the journal's first record", NULL);
    return;
  }
  s->cursor = pos;
  char from[24];
  snprintf(from, sizeof(from), "%" PRIu64, pos.next_seq);
  pki_log("info", "siem_cursor", "file", s->cursor_path, "from_seq", from, NULL);
}

pkid_siem *pkid_siem_start(const pkid_siem_options *o, const pki_journal_pos *end,
                           pki_err *err) {
  if (!pkid_siem_check(o, err)) return NULL;
  pkid_siem *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  s->fd = -1;
  snprintf(s->collector, sizeof(s->collector), "%s", o->collector);
  if (o->name != NULL && o->name[0] != '\0') snprintf(s->name, sizeof(s->name), "%s", o->name);
  else host_of(s->name, sizeof(s->name), o->collector);
  const char *host = o->hostname;
  if (host == NULL || host[0] == '\0') {
    if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0) s->hostname[0] = '\0';
  } else {
    snprintf(s->hostname, sizeof(s->hostname), "%s", host);
  }
  /* HOSTNAME is 1 to 255 printable US-ASCII octets, without spaces. */
  for (char *c = s->hostname; *c != '\0'; c++) {
    if (*c <= ' ' || *c > '~') *c = '_';
  }
  if (s->hostname[0] == '\0') snprintf(s->hostname, sizeof(s->hostname), "-");
  snprintf(s->journal_dir, sizeof(s->journal_dir), "%s", o->journal_dir);
  snprintf(s->cursor_path, sizeof(s->cursor_path), "%s/%s", o->journal_dir,
           PKID_SIEM_CURSOR_FILE);
  s->node = o->node;
  s->pid = (long)getpid();
  pki_hostport_parse(&s->addr, o->collector, err);
  s->ctx = new_ctx(o, err);
  if (s->ctx == NULL) {
    free(s);
    return NULL;
  }
  s->end = *end;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cond, NULL);
  load_cursor(s, end);
  s->sent = s->cursor;
  set_metrics(s, 0);
  int rc = pthread_create(&s->thread, NULL, run, s);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot start the SIEM feed's thread: %s", strerror(rc));
    pkid_siem_stop(s);
    return NULL;
  }
  s->thread_started = 1;
  return s;
}

void pkid_siem_durable(pkid_siem *s, const pki_journal_pos *end) {
  pthread_mutex_lock(&s->mu);
  s->end = *end;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->mu);
}

void pkid_siem_stop(pkid_siem *s) {
  if (s == NULL) return;
  if (s->thread_started) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
  }
  disconnect(s, 0);
  SSL_CTX_free(s->ctx);
  free(s->buf);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
