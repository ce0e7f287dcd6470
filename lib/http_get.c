/* http_get.c: GET over HTTP/1.1, one request per connection (see
 * http_get.h). */
#include "lib/http_get.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/sock.h"

void http_get_response_cleanup(http_get_response *resp) {
  if (resp == NULL) return;
  free(resp->body);
  memset(resp, 0, sizeof(*resp));
}

/* ---- the URL ---- */

int http_get_url_parse(http_get_url *out, const char *url, pki_err *err) {
  memset(out, 0, sizeof(*out));
  size_t len = strlen(url);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c == 0x7f) {
      PKI_ERR(err, PKI_ERR_INVALID, "URL '%.200s' holds a space or a control character", url);
      return 0;
    }
  }
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (len == 0 || http_parser_parse_url(url, len, 0, &u) != 0 ||
      !(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST))) {
    PKI_ERR(err, PKI_ERR_INVALID, "'%.200s' is not an http://HOST[:PORT]/PATH URL", url);
    return 0;
  }
  const char *schema = url + u.field_data[UF_SCHEMA].off;
  if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(schema, "http", 4) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "URL '%.200s': only http:// is fetched (CRLs and certificates are signed, and "
            "checked here, so they need no TLS: RFC 5280 section 8)",
            url);
    return 0;
  }
  if (u.field_set & (1 << UF_USERINFO)) {
    PKI_ERR(err, PKI_ERR_INVALID, "URL '%.200s' carries user information", url);
    return 0;
  }
  const char *host;
  size_t host_len;
  host = url + u.field_data[UF_HOST].off;
  host_len = u.field_data[UF_HOST].len;
  if (host_len == 0 || host_len >= sizeof(out->host)) {
    PKI_ERR(err, PKI_ERR_INVALID, "URL '%.200s': bad host", url);
    return 0;
  }
  memcpy(out->host, host, host_len);
  int v6 = memchr(host, ':', host_len) != NULL;
  if (u.field_set & (1 << UF_PORT)) {
    if (u.port == 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "URL '%.200s': port 0", url);
      return 0;
    }
    snprintf(out->port, sizeof(out->port), "%u", (unsigned)u.port);
    snprintf(out->host_header, sizeof(out->host_header), "%s%s%s:%u", v6 ? "[" : "", out->host,
             v6 ? "]" : "", (unsigned)u.port);
  } else {
    snprintf(out->port, sizeof(out->port), "80");
    snprintf(out->host_header, sizeof(out->host_header), "%s%s%s", v6 ? "[" : "", out->host,
             v6 ? "]" : "");
  }
  /* origin-form (RFC 9112 3.2.1): the path and query; the fragment stays
   * with the client. */
  size_t n = 0;
  if (u.field_set & (1 << UF_PATH)) {
    const char *p = url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    if (plen >= sizeof(out->target)) goto too_long;
    memcpy(out->target, p, plen);
    n = plen;
  } else {
    out->target[n++] = '/';
  }
  if (u.field_set & (1 << UF_QUERY)) {
    size_t qlen = u.field_data[UF_QUERY].len;
    if (n + 1 + qlen >= sizeof(out->target)) goto too_long;
    out->target[n++] = '?';
    memcpy(out->target + n, url + u.field_data[UF_QUERY].off, qlen);
    n += qlen;
  }
  out->target[n] = '\0';
  return 1;
too_long:
  PKI_ERR(err, PKI_ERR_INVALID, "URL '%.200s...' is too long", url);
  return 0;
}

/* ---- the response ---- */

static http_get_parser *parser_of(http_parser *hp) { return (http_get_parser *)hp->data; }

static int refuse(http_get_parser *p, const char *why) {
  p->failed = 1;
  snprintf(p->why, sizeof(p->why), "%s", why);
  return 1; /* non-zero: http_parser stops with HPE_CB_* */
}

/* valid_etag checks entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc =
 * %x21 / %x23-7E / obs-text (RFC 9110 8.8.3): what passes can be sent back
 * in a header as it is. */
static int valid_etag(const char *s, size_t len) {
  size_t i = 0;
  if (len >= 2 && s[0] == 'W' && s[1] == '/') i = 2;
  if (len < i + 2 || s[i] != '"' || s[len - 1] != '"') return 0;
  for (i++; i < len - 1; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80)) return 0;
  }
  return 1;
}

static void copy_value(char *dst, size_t dst_size, const char *value, size_t len) {
  if (len >= dst_size) len = dst_size - 1;
  memcpy(dst, value, len);
  dst[len] = '\0';
}

/* end_header files the header just read. */
static void end_header(http_get_parser *p) {
  if (!p->in_value) return;
  p->in_value = 0;
  size_t len = p->value_len;
  /* http_parser drops leading whitespace; trailing OWS (RFC 9110 5.5) is
   * not part of the value either. */
  while (len > 0 && (p->value[len - 1] == ' ' || p->value[len - 1] == '\t')) len--;
  http_get_response *o = p->out;
  if (p->field_len >= sizeof(p->field)) {
    /* A name longer than any we keep. */
  } else if (strcmp(p->field, "etag") == 0) {
    /* One valid entity-tag, or none: a second ETag makes both doubtful. */
    p->etag_count++;
    /* One that would not fit whole is refused, not cut: a cut tag has
     * lost its closing quote. */
    if (p->etag_count == 1 && !p->value_overflow && len < sizeof(o->etag) &&
        valid_etag(p->value, len)) {
      copy_value(o->etag, sizeof(o->etag), p->value, len);
    } else {
      o->etag[0] = '\0';
    }
  } else if (strcmp(p->field, "content-type") == 0) {
    copy_value(o->content_type, sizeof(o->content_type), p->value, len);
  } else if (strcmp(p->field, "last-modified") == 0) {
    copy_value(o->last_modified, sizeof(o->last_modified), p->value, len);
  } else if (strcmp(p->field, "expires") == 0) {
    copy_value(o->expires, sizeof(o->expires), p->value, len);
  } else if (strcmp(p->field, "cache-control") == 0) {
    copy_value(o->cache_control, sizeof(o->cache_control), p->value, len);
  }
  p->field_len = 0;
  p->field[0] = '\0';
  p->value_len = 0;
  p->value_overflow = 0;
}

static int on_message_begin(http_parser *hp) {
  http_get_parser *p = parser_of(hp);
  /* A 1xx response may come before the final one (RFC 9110 15.2): only
   * the final response's headers count. */
  free(p->out->body);
  memset(p->out, 0, sizeof(*p->out));
  p->body_cap = 0;
  p->field_len = 0;
  p->field[0] = '\0';
  p->in_value = 0;
  p->value_len = 0;
  p->value_overflow = 0;
  p->etag_count = 0;
  return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
  http_get_parser *p = parser_of(hp);
  if (p->in_value) end_header(p);
  for (size_t i = 0; i < len; i++) {
    if (p->field_len + 1 < sizeof(p->field)) {
      p->field[p->field_len] = (char)tolower((unsigned char)at[i]);
      p->field[p->field_len + 1] = '\0';
    }
    if (p->field_len < sizeof(p->field)) p->field_len++;
  }
  return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
  http_get_parser *p = parser_of(hp);
  p->in_value = 1;
  size_t room = sizeof(p->value) - 1 - p->value_len;
  if (len > room) {
    p->value_overflow = 1;
    len = room;
  }
  memcpy(p->value + p->value_len, at, len);
  p->value_len += len;
  p->value[p->value_len] = '\0';
  return 0;
}

static int on_headers_complete(http_parser *hp) {
  http_get_parser *p = parser_of(hp);
  end_header(p);
  p->out->status = (int)hp->status_code;
  if (hp->status_code == 101) return refuse(p, "the server switched protocols (101)");
  /* Refuse a body declared too large before reading any of it. */
  if (hp->content_length != UINT64_MAX && hp->content_length > (uint64_t)p->max_body) {
    char why[200];
    snprintf(why, sizeof(why), "the body (Content-Length %llu) is over the limit of %zu bytes",
             (unsigned long long)hp->content_length, p->max_body);
    return refuse(p, why);
  }
  return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
  http_get_parser *p = parser_of(hp);
  http_get_response *o = p->out;
  if (len > p->max_body - o->body_len) {
    char why[200];
    snprintf(why, sizeof(why), "the body is over the limit of %zu bytes", p->max_body);
    return refuse(p, why);
  }
  if (o->body_len + len + 1 > p->body_cap) {
    size_t cap = p->body_cap > 0 ? p->body_cap : 4096;
    while (cap < o->body_len + len + 1) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    uint8_t *grown = realloc(o->body, cap);
    if (grown == NULL) return refuse(p, "out of memory for the body");
    o->body = grown;
    p->body_cap = cap;
  }
  memcpy(o->body + o->body_len, at, len);
  o->body_len += len;
  o->body[o->body_len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *hp) {
  http_get_parser *p = parser_of(hp);
  if (p->out->status >= 100 && p->out->status < 200) return 0; /* the final one follows */
  p->done = 1;
  /* One response per connection: whatever follows is not ours to read. */
  http_parser_pause(hp, 1);
  return 0;
}

static const http_parser_settings kSettings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_get_parser_init(http_get_parser *p, http_get_response *out, size_t max_body) {
  memset(p, 0, sizeof(*p));
  memset(out, 0, sizeof(*out));
  http_parser_init(&p->parser, HTTP_RESPONSE);
  p->parser.data = p;
  p->out = out;
  p->max_body = max_body > 0 ? max_body : HTTP_GET_DEFAULT_MAX_BODY;
}

int http_get_parser_feed(http_get_parser *p, const uint8_t *data, size_t len, pki_err *err) {
  if (p->done) return 1;
  if (p->failed) {
    PKI_ERR(err, PKI_ERR_INVALID, "the response was refused: %s", p->why);
    return 0;
  }
  size_t n = http_parser_execute(&p->parser, &kSettings, (const char *)data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
  if (p->failed) {
    int too_big = strstr(p->why, "over the limit") != NULL || strstr(p->why, "memory") != NULL;
    PKI_ERR(err, too_big ? PKI_ERR_EXHAUSTED : PKI_ERR_INVALID, "%s", p->why);
    return 0;
  }
  if (p->done) return 1;
  if (e != HPE_OK) {
    PKI_ERR(err, PKI_ERR_INVALID, "the response does not parse: %s", http_errno_description(e));
    return 0;
  }
  if (p->parser.upgrade || n != len) {
    PKI_ERR(err, PKI_ERR_INVALID, "the response does not parse: it asks for an upgrade");
    return 0;
  }
  if (len == 0) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "the connection closed before the response was complete");
    return 0;
  }
  return 1;
}

/* ---- the exchange ---- */

int http_get(http_get_response *out, const http_get_request *req, pki_err *err) {
  memset(out, 0, sizeof(*out));
  http_get_url url;
  if (!http_get_url_parse(&url, req->url, err)) return 0;
  if (req->if_none_match != NULL &&
      !valid_etag(req->if_none_match, strlen(req->if_none_match))) {
    PKI_ERR(err, PKI_ERR_INVALID, "'%.100s' is not an entity-tag", req->if_none_match);
    return 0;
  }
  if (req->accept != NULL && strpbrk(req->accept, "\r\n") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "bad Accept value");
    return 0;
  }
  if (req->user_agent != NULL && strpbrk(req->user_agent, "\r\n") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "bad User-Agent value");
    return 0;
  }
  char head[4096];
  int n = snprintf(head, sizeof(head),
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "User-Agent: %s\r\n"
                   "%s%s%s"
                   "%s%s%s"
                   "Connection: close\r\n"
                   "\r\n",
                   url.target, url.host_header,
                   req->user_agent != NULL ? req->user_agent : "pkictl",
                   req->accept != NULL ? "Accept: " : "",
                   req->accept != NULL ? req->accept : "", req->accept != NULL ? "\r\n" : "",
                   req->if_none_match != NULL ? "If-None-Match: " : "",
                   req->if_none_match != NULL ? req->if_none_match : "",
                   req->if_none_match != NULL ? "\r\n" : "");
  if (n < 0 || (size_t)n >= sizeof(head)) {
    PKI_ERR(err, PKI_ERR_INVALID, "the request for '%.200s' is too long", req->url);
    return 0;
  }
  uint64_t deadline =
      sock_deadline(req->timeout_ms != 0 ? req->timeout_ms : HTTP_GET_DEFAULT_TIMEOUT_MS);
  const char *what = req->url;
  int fd = sock_connect_tcp(req->connect_host != NULL ? req->connect_host : url.host,
                            req->connect_port != NULL ? req->connect_port : url.port, deadline,
                            what, err);
  if (fd < 0) return 0;
  int ok = sock_send_all(fd, head, (size_t)n, deadline, what, err);
  http_get_parser p;
  http_get_parser_init(&p, out, req->max_body);
  size_t cap = 64 * 1024;
  uint8_t *buf = ok ? malloc(cap) : NULL;
  if (ok && buf == NULL) {
    PKI_ERR_OOM(err);
    ok = 0;
  }
  while (ok && !p.done) {
    size_t got = 0;
    if (!sock_recv(fd, buf, cap, &got, deadline, what, err)) {
      ok = 0;
    } else if (!http_get_parser_feed(&p, buf, got, err)) {
      pki_err_prefix(err, "%s: ", what);
      ok = 0;
    }
  }
  free(buf);
  close(fd);
  if (!ok) http_get_response_cleanup(out);
  return ok;
}
