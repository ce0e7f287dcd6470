/* pem.c: see pem.h.
 *
 * BoringSSL's PEM_read_bio and PEM_write_bio are not used: PEM_read_bio
 * accepts non-canonical base64 (it would give a second base64 decoder with
 * other rules), fails on an empty block without saying why, and both work
 * on BIOs with OPENSSL_malloc'd buffers, where lib/ hands out malloc'd ones
 * and would copy private keys once more. The writer's output is checked
 * byte for byte against PEM_write_bio's in tests/unit/pem_test.c. */
#include "lib/pem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

#include "lib/base64.h"

static const unsigned kPemBase64 = PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED;
static const char kBegin[] = "-----BEGIN ";
static const char kEnd[] = "-----END ";
static const char kDashes[] = "-----";

#define BEGIN_LEN (sizeof(kBegin) - 1)
#define END_LEN (sizeof(kEnd) - 1)
#define DASHES_LEN (sizeof(kDashes) - 1)
/* RFC 7468 section 2: 64 characters a line, 48 bytes of data. */
#define LINE_BYTES 48

/* is_labelchar: printable ASCII but '-' (RFC 7468 section 3, labelchar). */
static int is_labelchar(uint8_t c) { return c >= 0x21 && c <= 0x7e && c != '-'; }

/* label_ok checks RFC 7468's label = [ labelchar *( ["-" / SP] labelchar ) ]:
 * a '-' or a space only between two labelchars. */
static int label_ok(const uint8_t *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (is_labelchar(s[i])) continue;
    if ((s[i] != '-' && s[i] != ' ') || i == 0 || i + 1 == len || !is_labelchar(s[i - 1])) {
      return 0;
    }
  }
  return 1;
}

int pki_pem_append(char **text, size_t *text_len, const char *label, const uint8_t *der,
                   size_t der_len, pki_err *err) {
  size_t label_len = strlen(label), b64_len;
  if (label_len == 0 || label_len > PKI_PEM_LABEL_MAX ||
      !label_ok((const uint8_t *)label, label_len)) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a PEM label (RFC 7468 section 3)");
    return 0;
  }
  if (der_len > SIZE_MAX / 2 || !pki_base64_encoded_len(&b64_len, der_len, kPemBase64)) {
    PKI_ERR(err, PKI_ERR_INVALID, "%zu bytes are too many for PEM", der_len);
    return 0;
  }
  size_t lines = (der_len + LINE_BYTES - 1) / LINE_BYTES;
  /* BEGIN and END lines, the base64 and a newline after each of its lines. */
  size_t block = BEGIN_LEN + END_LEN + 2 * (label_len + DASHES_LEN + 1) + b64_len + lines;
  if (*text_len > SIZE_MAX - block - 1) {
    PKI_ERR(err, PKI_ERR_INVALID, "PEM text too large");
    return 0;
  }
  size_t cap = *text_len + block + 1;
  char *buf = malloc(cap);
  if (buf == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  if (*text_len > 0) memcpy(buf, *text, *text_len);
  size_t pos = *text_len;
  pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s%s\n", kBegin, label, kDashes);
  for (size_t off = 0; off < der_len; off += LINE_BYTES) {
    size_t chunk = der_len - off < LINE_BYTES ? der_len - off : LINE_BYTES, n;
    if (!pki_base64_encode(buf + pos, cap - pos, &n, der + off, chunk, kPemBase64, err)) {
      OPENSSL_cleanse(buf, cap);
      free(buf);
      return 0;
    }
    pos += n;
    buf[pos++] = '\n';
  }
  pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s%s\n", kEnd, label, kDashes);
  if (*text != NULL) {
    OPENSSL_cleanse(*text, *text_len);
    free(*text);
  }
  *text = buf;
  *text_len = pos;
  return 1;
}

/* line_at measures the line that starts at |pos|: its length without the
 * LF and without trailing spaces, tabs and CR (RFC 7468's WSP and CRLF).
 * |*next| is where the line after it starts. */
static size_t line_at(const uint8_t *text, size_t text_len, size_t pos, size_t *next) {
  const uint8_t *nl = memchr(text + pos, '\n', text_len - pos);
  size_t end = nl != NULL ? (size_t)(nl - text) : text_len;
  *next = nl != NULL ? end + 1 : text_len;
  while (end > pos && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r')) {
    end--;
  }
  return end - pos;
}

static int starts_with(const uint8_t *line, size_t len, const char *prefix, size_t prefix_len) {
  return len >= prefix_len && memcmp(line, prefix, prefix_len) == 0;
}

/* armour_label reads "<prefix><label>-----" in |line| (prefix kBegin or
 * kEnd) and points |*label| at the label. 0 if the line is not of that
 * form or the label is not one. */
static int armour_label(const uint8_t *line, size_t len, const char *prefix, size_t prefix_len,
                        const uint8_t **label, size_t *label_len) {
  if (!starts_with(line, len, prefix, prefix_len) || len < prefix_len + DASHES_LEN ||
      memcmp(line + len - DASHES_LEN, kDashes, DASHES_LEN) != 0) {
    return 0;
  }
  *label = line + prefix_len;
  *label_len = len - prefix_len - DASHES_LEN;
  return label_ok(*label, *label_len);
}

/* find_end finds the END line of the block labelled |label| whose body
 * starts at |pos|: the body ends at |*body_end|, the text after the END
 * line starts at |*after|. */
static int find_end(const uint8_t *text, size_t text_len, size_t pos, const uint8_t *label,
                    size_t label_len, size_t *body_end, size_t *after, pki_err *err) {
  while (pos < text_len) {
    size_t next, len = line_at(text, text_len, pos, &next);
    const uint8_t *line = text + pos, *end_label;
    size_t end_label_len;
    if (starts_with(line, len, kEnd, END_LEN)) {
      if (!armour_label(line, len, kEnd, END_LEN, &end_label, &end_label_len) ||
          end_label_len != label_len || memcmp(end_label, label, label_len) != 0) {
        PKI_ERR(err, PKI_ERR_INVALID, "PEM block '%.*s' has a malformed or mismatched END line",
                (int)label_len, (const char *)label);
        return 0;
      }
      *body_end = pos;
      *after = next;
      return 1;
    }
    if (starts_with(line, len, kBegin, BEGIN_LEN)) break;
    pos = next;
  }
  PKI_ERR(err, PKI_ERR_INVALID, "PEM block '%.*s' has no END line", (int)label_len,
          (const char *)label);
  return 0;
}

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* decode_body decodes the base64 between a block's BEGIN and END lines. */
static int decode_body(uint8_t **out, size_t *out_len, const uint8_t *body, size_t body_len,
                       const char *label, pki_err *err) {
  /* RFC 1421 put "Name: value" headers before the data; RFC 7468 has none.
   * Where they are, they say how to decrypt it (legacy PEM encryption),
   * which pkid does not do: refuse rather than decode ciphertext as DER. */
  size_t first = 0;
  while (first < body_len && is_space(body[first])) first++;
  const uint8_t *nl = memchr(body + first, '\n', body_len - first);
  size_t first_len = nl != NULL ? (size_t)(nl - (body + first)) : body_len - first;
  if (memchr(body + first, ':', first_len) != NULL) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "PEM block '%s' has RFC 1421 headers (legacy PEM encryption), which pkid does "
            "not read",
            label);
    return 0;
  }
  size_t cap = pki_base64_max_decoded_len(body_len);
  char *b64 = malloc(body_len + 1);
  uint8_t *data = malloc(cap + 1);
  if (b64 == NULL || data == NULL) {
    free(b64);
    free(data);
    PKI_ERR_OOM(err);
    return 0;
  }
  size_t n = 0;
  for (size_t i = 0; i < body_len; i++) {
    if (!is_space(body[i])) b64[n++] = (char)body[i];
  }
  pki_err b64_err;
  size_t len = 0;
  int ok = pki_base64_decode(data, cap, &len, b64, n, kPemBase64, &b64_err);
  OPENSSL_cleanse(b64, body_len + 1);
  free(b64);
  if (!ok) {
    OPENSSL_cleanse(data, cap + 1);
    free(data);
    PKI_ERR(err, PKI_ERR_INVALID, "PEM block '%s' is not valid %s", label, b64_err.msg);
    return 0;
  }
  *out = data;
  *out_len = len;
  return 1;
}

/* not_found says which labels were looked for. */
static void not_found(pki_err *err, const char *const *labels, size_t num_labels) {
  char list[256] = "";
  size_t n = 0;
  for (size_t i = 0; i < num_labels; i++) {
    const char *sep = i == 0 ? "" : i + 1 == num_labels ? " or " : ", ";
    int w = snprintf(list + n, sizeof(list) - n, "%s'%s'", sep, labels[i]);
    if (w < 0 || (size_t)w >= sizeof(list) - n) break;
    n += (size_t)w;
  }
  PKI_ERR(err, PKI_ERR_NOT_FOUND, "no PEM block labelled %s", list);
}

int pki_pem_decode(uint8_t **out, size_t *out_len, const char **out_label,
                   const char *const *labels, size_t num_labels, const uint8_t *text,
                   size_t text_len, unsigned flags, pki_err *err) {
  *out = NULL;
  *out_len = 0;
  if (out_label != NULL) *out_label = NULL;
  if ((flags & ~PKI_PEM_OR_DER) != 0 || num_labels == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "pki_pem_decode: bad flags or no labels");
    return 0;
  }
  int armoured = text_len > 0 && memmem(text, text_len, kBegin, BEGIN_LEN) != NULL;
  if ((flags & PKI_PEM_OR_DER) && !armoured) {
    *out = malloc(text_len > 0 ? text_len : 1);
    if (*out == NULL) {
      PKI_ERR_OOM(err);
      return 0;
    }
    if (text_len > 0) memcpy(*out, text, text_len);
    *out_len = text_len;
    return 1;
  }
  size_t pos = 0;
  while (pos < text_len) {
    size_t next, len = line_at(text, text_len, pos, &next);
    const uint8_t *label;
    size_t label_len, body_end, after;
    if (!armour_label(text + pos, len, kBegin, BEGIN_LEN, &label, &label_len)) {
      pos = next; /* explanatory text (RFC 7468 section 5.2) */
      continue;
    }
    if (!find_end(text, text_len, next, label, label_len, &body_end, &after, err)) return 0;
    for (size_t i = 0; i < num_labels; i++) {
      if (strlen(labels[i]) == label_len && memcmp(labels[i], label, label_len) == 0) {
        if (!decode_body(out, out_len, text + next, body_end - next, labels[i], err)) {
          return 0;
        }
        if (out_label != NULL) *out_label = labels[i];
        return 1;
      }
    }
    pos = after;
  }
  not_found(err, labels, num_labels);
  return 0;
}
