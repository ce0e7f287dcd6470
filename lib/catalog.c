/* catalog.c: loading and validating the service catalogue.
 *
 * The YAML is read with libyaml's document API into a node tree, then
 * walked by hand: each mapping is checked against the keys it may have, so
 * that a typo is an error and not a setting silently left at its default.
 * Every message starts with "file:line: " (1-based, from libyaml's marks).
 *
 * Anchors and aliases are refused: a catalogue has no use for them, and
 * refusing them keeps the walk a tree walk (no cycles, no exponential
 * re-reading of shared nodes).
 *
 * The top-level keys are looked up first and then handled in a fixed order
 * (CAs before services), so every service is checked against fully known
 * CAs wherever in the file the two lists are. */
#include "lib/catalog.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "lib/file.h"

/* Generated from deploy/catalog.yaml by //lib:catalog_default_c. */
extern const char pki_catalog_default_yaml[];
extern const size_t pki_catalog_default_yaml_len;

#define CATALOG_MAX_BYTES (1024 * 1024)
#define CATALOG_MAX_CAS 64
#define CATALOG_MAX_SERVICES 10000
#define CATALOG_MAX_LIST 100   /* names or subtrees of one type */
#define CATALOG_MAX_LABELS 64
#define CATALOG_MAX_VALIDITY_DAYS 36500
#define CATALOG_MAX_PATH_LEN 16
#define CATALOG_MAX_BASE_URL 1024 /* crl_url, ca_issuers_url */
#define CATALOG_DEFAULT_VALIDITY_S (30u * 86400u)
/* X.520 upper bounds of commonName and organizationName. */
#define SUBJECT_ATTR_MAX 64
#define PATH_MAX_LEN 255
#define LABEL_VALUE_MAX 256

typedef struct parse_ctx {
  yaml_document_t doc;
  const char *source;
  pki_err *err;
  uint8_t *seen; /* per node: already walked, so reached through an alias */
  size_t num_nodes;
} parse_ctx;

/* A string that must be unique across services, with where it was given. */
typedef struct unique_entry {
  char *key;
  int line;
  size_t service;
  int derived; /* a .key or -chain.crt named after a certificate file */
} unique_entry;

typedef struct unique_set {
  unique_entry *entries;
  size_t num, cap;
} unique_set;

static int fail_at(parse_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(parse_ctx *ctx, int line, const char *fmt, ...) {
  char msg[sizeof(ctx->err->msg)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  PKI_ERR(ctx->err, PKI_ERR_INVALID, "%s:%d: %s", ctx->source, line, msg);
  return 0;
}

/* prefix_at puts "file:line: what: " before an error a callee set. */
static int prefix_at(parse_ctx *ctx, int line, const char *what) {
  pki_err_prefix(ctx->err, "%s:%d: %s: ", ctx->source, line, what);
  return 0;
}

static int oom(parse_ctx *ctx) {
  PKI_ERR_OOM(ctx->err);
  return 0;
}

static int node_line(const yaml_node_t *node) {
  size_t line = node->start_mark.line + 1;
  return line > INT_MAX ? INT_MAX : (int)line;
}

/* get_node fetches a node by index, refusing one walked before (an alias)
 * and explicit tags that change a node's kind ("!!int", "!custom"). */
static yaml_node_t *get_node(parse_ctx *ctx, yaml_node_item_t index,
                             int line) {
  yaml_node_t *node = yaml_document_get_node(&ctx->doc, index);
  if (node == NULL || index < 1 || (size_t)index > ctx->num_nodes) {
    fail_at(ctx, line, "malformed YAML document");
    return NULL;
  }
  if (ctx->seen[index - 1]) {
    fail_at(ctx, node_line(node), "anchors and aliases are not supported");
    return NULL;
  }
  ctx->seen[index - 1] = 1;
  const char *want = node->type == YAML_SCALAR_NODE     ? YAML_STR_TAG
                     : node->type == YAML_SEQUENCE_NODE ? YAML_SEQ_TAG
                                                        : YAML_MAP_TAG;
  if (node->tag == NULL || strcmp((const char *)node->tag, want) != 0) {
    fail_at(ctx, node_line(node), "YAML tag '%s' is not supported",
            node->tag != NULL ? (const char *)node->tag : "");
    return NULL;
  }
  return node;
}

/* get_scalar returns the text of a scalar, refusing other kinds, empty
 * text, NUL bytes and control characters. */
static const char *get_scalar(parse_ctx *ctx, yaml_node_t *node,
                              const char *what, size_t max_len) {
  if (node->type != YAML_SCALAR_NODE) {
    fail_at(ctx, node_line(node), "%s must be a single value, not a %s", what,
            node->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
    return NULL;
  }
  const char *text = (const char *)node->data.scalar.value;
  size_t len = node->data.scalar.length;
  if (len == 0) {
    fail_at(ctx, node_line(node), "%s is empty", what);
    return NULL;
  }
  if (len > max_len) {
    fail_at(ctx, node_line(node), "%s is longer than %zu characters", what,
            max_len);
    return NULL;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c < 0x20 || c == 0x7f) {
      fail_at(ctx, node_line(node), "%s contains a control character", what);
      return NULL;
    }
  }
  return text;
}

/* get_fields reads the mapping |map| whose allowed keys are |keys| into
 * |out| (NULL where absent). Unknown and repeated keys are errors. */
static int get_fields(parse_ctx *ctx, yaml_node_t *map, const char *what,
                      const char *const *keys, size_t num_keys,
                      yaml_node_t **out) {
  for (size_t i = 0; i < num_keys; i++) out[i] = NULL;
  if (map->type != YAML_MAPPING_NODE) {
    return fail_at(ctx, node_line(map), "%s must be a mapping", what);
  }
  for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
       pair < map->data.mapping.pairs.top; pair++) {
    yaml_node_t *key = get_node(ctx, pair->key, node_line(map));
    if (key == NULL) return 0;
    if (key->type != YAML_SCALAR_NODE) {
      return fail_at(ctx, node_line(key), "keys in %s must be plain words",
                     what);
    }
    const char *text = get_scalar(ctx, key, "a key", 64);
    if (text == NULL) return 0;
    size_t i = 0;
    while (i < num_keys && strcmp(keys[i], text) != 0) i++;
    if (i == num_keys) {
      char allowed[256] = "";
      for (size_t j = 0; j < num_keys; j++) {
        size_t used = strlen(allowed);
        snprintf(allowed + used, sizeof(allowed) - used, "%s%s",
                 j > 0 ? ", " : "", keys[j]);
      }
      return fail_at(ctx, node_line(key),
                     "unknown key '%.64s' in %s (allowed: %s)", text, what,
                     allowed);
    }
    if (out[i] != NULL) {
      return fail_at(ctx, node_line(key), "duplicate key '%s' in %s", keys[i],
                     what);
    }
    out[i] = get_node(ctx, pair->value, node_line(key));
    if (out[i] == NULL) return 0;
  }
  return 1;
}

static int require_field(parse_ctx *ctx, yaml_node_t *map, yaml_node_t *field,
                         const char *key, const char *what) {
  if (field != NULL) return 1;
  return fail_at(ctx, node_line(map), "%s: missing '%s'", what, key);
}

static int get_string(parse_ctx *ctx, yaml_node_t *node, const char *what,
                      size_t max_len, char **out) {
  const char *text = get_scalar(ctx, node, what, max_len);
  if (text == NULL) return 0;
  *out = strdup(text);
  if (*out == NULL) return oom(ctx);
  return 1;
}

/* get_uint reads a plain (unquoted) decimal integer of at most |max|. */
static int get_uint(parse_ctx *ctx, yaml_node_t *node, const char *what,
                    uint32_t max, uint32_t *out) {
  const char *text = get_scalar(ctx, node, what, 10);
  if (text == NULL) return 0;
  if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
    return fail_at(ctx, node_line(node), "%s must be a number, not a string",
                   what);
  }
  uint64_t v = 0;
  for (const char *p = text; *p != '\0'; p++) {
    if (*p < '0' || *p > '9') {
      return fail_at(ctx, node_line(node), "%s must be a whole number, not '%s'",
                     what, text);
    }
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (v > max) {
    return fail_at(ctx, node_line(node), "%s is %s, more than %u", what, text,
                   (unsigned)max);
  }
  *out = (uint32_t)v;
  return 1;
}

static int get_duration(parse_ctx *ctx, yaml_node_t *node, const char *what,
                        uint32_t *out) {
  const char *text = get_scalar(ctx, node, what, 16);
  if (text == NULL) return 0;
  if (!pki_duration_parse(out, text, ctx->err)) {
    return prefix_at(ctx, node_line(node), what);
  }
  return 1;
}

static int get_seq(parse_ctx *ctx, yaml_node_t *node, const char *what,
                   size_t max_items) {
  if (node->type != YAML_SEQUENCE_NODE) {
    return fail_at(ctx, node_line(node), "%s must be a list", what);
  }
  size_t n = (size_t)(node->data.sequence.items.top -
                      node->data.sequence.items.start);
  if (n > max_items) {
    return fail_at(ctx, node_line(node), "%s has %zu entries, more than %zu",
                   what, n, max_items);
  }
  return 1;
}

static size_t seq_len(const yaml_node_t *node) {
  return (size_t)(node->data.sequence.items.top -
                  node->data.sequence.items.start);
}

/* check_ident: CA and service names are lower-case words joined by '-',
 * since they become file names, metric labels and subject CNs. */
static int check_ident(parse_ctx *ctx, yaml_node_t *node, const char *text,
                       const char *what) {
  size_t len = strlen(text);
  int ok = len <= SUBJECT_ATTR_MAX && text[0] >= 'a' && text[0] <= 'z' &&
           text[len - 1] != '-';
  for (size_t i = 0; ok && i < len; i++) {
    char c = text[i];
    ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  }
  if (!ok) {
    return fail_at(ctx, node_line(node),
                   "%s '%.64s' must be lower-case letters, digits and '-', "
                   "start with a letter and be at most %d characters",
                   what, text, SUBJECT_ATTR_MAX);
  }
  return 1;
}

/* check_rel_path: a relative path of plain segments, so that files stay
 * under the directory they are meant for. */
static int check_rel_path(parse_ctx *ctx, yaml_node_t *node, const char *text,
                          const char *what) {
  const char *p = text;
  while (1) {
    size_t seg = strcspn(p, "/");
    int dots = (seg == 1 && p[0] == '.') || (seg == 2 && p[0] == '.' &&
                                             p[1] == '.');
    if (seg == 0 || dots) {
      return fail_at(ctx, node_line(node),
                     "%s '%.64s' must be a relative path without empty, '.' "
                     "or '..' parts",
                     what, text);
    }
    for (size_t i = 0; i < seg; i++) {
      char c = p[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
        return fail_at(ctx, node_line(node),
                       "%s '%.64s' has '%c'; use letters, digits, '-', '_', "
                       "'.' and '/'",
                       what, text, c);
      }
    }
    if (p[seg] == '\0') return 1;
    p += seg + 1;
  }
}

/* Key types, as lib/key.h names them. */
static int get_key_type(parse_ctx *ctx, yaml_node_t *node, const char *what,
                        pki_key_type *type, unsigned *bits) {
  const char *text = get_scalar(ctx, node, what, 32);
  if (text == NULL) return 0;
  if (!pki_key_type_parse(type, bits, text, ctx->err)) {
    ctx->err->code = PKI_ERR_INVALID;
    return prefix_at(ctx, node_line(node), what);
  }
  return 1;
}

/* parse_service_keys reads a service's key policy: one type or a list, the
 * first the default (ecdsa-p256 when the key is not given). */
static int parse_service_keys(parse_ctx *ctx, yaml_node_t *node, const char *what,
                              pki_catalog_service *svc) {
  svc->num_key_types = 1;
  svc->key_types[0] = PKI_KEY_ECDSA_P256;
  svc->key_bits_list[0] = 256;
  if (node != NULL && node->type == YAML_SEQUENCE_NODE) {
    if (!get_seq(ctx, node, what, PKI_CATALOG_MAX_KEYS)) return 0;
    svc->num_key_types = 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start;
         it < node->data.sequence.items.top; it++) {
      yaml_node_t *item = get_node(ctx, *it, node_line(node));
      size_t n = svc->num_key_types;
      if (item == NULL ||
          !get_key_type(ctx, item, what, &svc->key_types[n], &svc->key_bits_list[n])) {
        return 0;
      }
      for (size_t i = 0; i < n; i++) {
        if (svc->key_types[i] == svc->key_types[n] &&
            svc->key_bits_list[i] == svc->key_bits_list[n]) {
          return fail_at(ctx, node_line(item), "%s: a key type is listed twice", what);
        }
      }
      svc->num_key_types++;
    }
    if (svc->num_key_types == 0) return fail_at(ctx, node_line(node), "%s: empty list", what);
  } else if (node != NULL &&
             !get_key_type(ctx, node, what, &svc->key_types[0], &svc->key_bits_list[0])) {
    return 0;
  }
  svc->key_type = svc->key_types[0];
  svc->key_bits = svc->key_bits_list[0];
  return 1;
}

int pki_catalog_service_accepts_key(const pki_catalog_service *svc, pki_key_type type,
                                    unsigned bits) {
  for (size_t i = 0; i < svc->num_key_types; i++) {
    if (svc->key_types[i] == type && svc->key_bits_list[i] == bits) return 1;
  }
  return 0;
}

/* ---- look-ups on a catalogue being built ---- */

static const pki_catalog_ca *find_ca_n(const pki_catalog *cat, size_t limit,
                                       const char *name) {
  for (size_t i = 0; i < limit && i < cat->num_cas; i++) {
    if (cat->cas[i].name != NULL && strcmp(cat->cas[i].name, name) == 0) {
      return &cat->cas[i];
    }
  }
  return NULL;
}

static const pki_catalog_ca *parent_of(const pki_catalog *cat,
                                       const pki_catalog_ca *ca) {
  if (ca->parent == NULL) return NULL;
  return find_ca_n(cat, (size_t)(ca - cat->cas), ca->parent);
}

/* ---- names and subtrees ---- */

static const char *const kNameTypeKeys[] = {"dns", "ip", "uri", "email"};
static const pki_name_type kNameTypes[] = {PKI_NAME_DNS, PKI_NAME_IP,
                                           PKI_NAME_URI, PKI_NAME_EMAIL};

/* get_name_lists reads {dns: [...], ip: [...], ...} into |*names|, checking
 * each entry as a name (or, with |subtrees|, as a subtree). Types other
 * than those |allowed| (a bit per kNameTypeKeys index) are unknown keys. */
static int get_name_lists(parse_ctx *ctx, yaml_node_t *map, const char *what,
                          int subtrees, unsigned allowed, pki_name **names,
                          size_t *num, int **lines) {
  const char *keys[4];
  pki_name_type types[4];
  size_t num_keys = 0;
  for (size_t i = 0; i < 4; i++) {
    if (allowed & (1u << i)) {
      keys[num_keys] = kNameTypeKeys[i];
      types[num_keys++] = kNameTypes[i];
    }
  }
  yaml_node_t *f[4];
  if (!get_fields(ctx, map, what, keys, num_keys, f)) return 0;
  for (size_t k = 0; k < num_keys; k++) {
    if (f[k] == NULL) continue;
    char list_what[96];
    snprintf(list_what, sizeof(list_what), "%s: %s", what, keys[k]);
    if (!get_seq(ctx, f[k], list_what, CATALOG_MAX_LIST)) return 0;
    for (yaml_node_item_t *it = f[k]->data.sequence.items.start;
         it < f[k]->data.sequence.items.top; it++) {
      yaml_node_t *item = get_node(ctx, *it, node_line(f[k]));
      if (item == NULL) return 0;
      const char *text = get_scalar(ctx, item, list_what, 2048);
      if (text == NULL) return 0;
      int ok = subtrees ? pki_subtree_check(types[k], text, ctx->err)
                        : pki_name_check(types[k], text, ctx->err);
      if (!ok) return prefix_at(ctx, node_line(item), what);
      pki_name candidate = {types[k], (char *)text};
      for (size_t j = 0; j < *num; j++) {
        if (pki_name_equal(&(*names)[j], &candidate)) {
          return fail_at(ctx, node_line(item), "%s: %s '%s' is listed twice",
                         what, pki_name_type_label(types[k]), text);
        }
      }
      if (lines != NULL) {
        int *grown = realloc(*lines, (*num + 1) * sizeof(int));
        if (grown == NULL) return oom(ctx);
        *lines = grown;
        grown[*num] = node_line(item);
      }
      if (!pki_names_push(names, num, types[k], text, strlen(text),
                          ctx->err)) {
        return prefix_at(ctx, node_line(item), what);
      }
    }
  }
  return 1;
}

static int mem_case_equal(const char *a, const char *b, size_t len) {
  return strncasecmp(a, b, len) == 0;
}

/* below_domain: |name| is |domain| with one or more labels in front. */
static int below_domain(const char *name, const char *domain) {
  size_t n = strlen(name), d = strlen(domain);
  return n > d + 1 && name[n - d - 1] == '.' &&
         mem_case_equal(name + n - d, domain, d);
}

/* subtree_within reports whether every name of subtree |s| also lies in
 * subtree |t| (same type), so that a CA cannot widen what its parent
 * allows. */
static int subtree_within(const pki_name *s, const pki_name *t) {
  if (s->type != t->type) return 0;
  const char *sv = s->value, *tv = t->value;
  switch (s->type) {
    case PKI_NAME_IP: {
      uint8_t sa[16], sm[16], ta[16], tm[16];
      size_t sl, tl;
      if (!pki_cidr_parse(sa, sm, &sl, sv) || !pki_cidr_parse(ta, tm, &tl, tv) ||
          sl != tl) {
        return 0;
      }
      for (size_t i = 0; i < sl; i++) {
        if ((sm[i] & tm[i]) != tm[i] || (sa[i] & tm[i]) != ta[i]) return 0;
      }
      return 1;
    }
    case PKI_NAME_DNS: {
      if (sv[0] != '.') return pki_name_in_subtree(s, t);
      /* ".d" (every name below d) lies in "e" when d does, and in ".e" when
       * d is e or below it. */
      pki_name d = {PKI_NAME_DNS, (char *)sv + 1};
      if (tv[0] == '.' && strcasecmp(sv + 1, tv + 1) == 0) return 1;
      return pki_name_in_subtree(&d, t);
    }
    case PKI_NAME_EMAIL:
      if (strchr(sv, '@') != NULL) return pki_name_in_subtree(s, t);
      if (strchr(tv, '@') != NULL) return 0;
      /* fall through: host subtrees follow the URI rule */
    case PKI_NAME_URI: {
      /* "h" is host h only; ".d" the hosts below d. */
      const char *tdom = tv[0] == '.' ? tv + 1 : NULL;
      if (tdom == NULL) return sv[0] != '.' && strcasecmp(sv, tv) == 0;
      const char *sdom = sv[0] == '.' ? sv + 1 : sv;
      return below_domain(sdom, tdom) ||
             (sv[0] == '.' && strcasecmp(sdom, tdom) == 0);
    }
  }
  return 0;
}

/* check_name_fits checks a service's |name| against the name constraints
 * of its CA and of every CA above it. */
static int check_name_fits(parse_ctx *ctx, const pki_catalog *cat,
                           const pki_catalog_ca *ca, const pki_name *name,
                           int line, const char *service) {
  for (; ca != NULL; ca = parent_of(cat, ca)) {
    size_t ex = 0;
    switch (pki_name_constraints_check(name, ca->permitted, ca->num_permitted, ca->excluded,
                                       ca->num_excluded, &ex)) {
      case PKI_NAME_ALLOWED: break;
      case PKI_NAME_NOT_PERMITTED:
        return fail_at(ctx, line,
                       "service '%s': %s name '%s' is outside the permitted "
                       "name constraints of CA '%s'",
                       service, pki_name_type_label(name->type), name->value, ca->name);
      case PKI_NAME_EXCLUDED:
        return fail_at(ctx, line,
                       "service '%s': %s name '%s' falls in excluded subtree "
                       "'%s' of CA '%s'",
                       service, pki_name_type_label(name->type), name->value,
                       ca->excluded[ex].value, ca->name);
    }
  }
  return 1;
}

/* ---- CAs ---- */

static int get_name_constraints(parse_ctx *ctx, yaml_node_t *node,
                                pki_catalog_ca *ca) {
  static const char *const keys[] = {"permitted", "excluded"};
  yaml_node_t *f[2];
  char what[96];
  snprintf(what, sizeof(what), "CA '%s': name_constraints", ca->name);
  if (!get_fields(ctx, node, what, keys, 2, f)) return 0;
  if (f[0] != NULL) {
    snprintf(what, sizeof(what), "CA '%s': permitted", ca->name);
    if (!get_name_lists(ctx, f[0], what, 1, 0xf, &ca->permitted,
                        &ca->num_permitted, NULL)) {
      return 0;
    }
  }
  if (f[1] != NULL) {
    snprintf(what, sizeof(what), "CA '%s': excluded", ca->name);
    if (!get_name_lists(ctx, f[1], what, 1, 0xf, &ca->excluded,
                        &ca->num_excluded, NULL)) {
      return 0;
    }
  }
  return 1;
}

static int check_ca_against_ancestors(parse_ctx *ctx, const pki_catalog *cat,
                                      const pki_catalog_ca *ca) {
  int depth = 1;
  for (const pki_catalog_ca *up = parent_of(cat, ca); up != NULL;
       up = parent_of(cat, up), depth++) {
    /* pathLenConstraint counts the CA certificates that may follow. */
    if (up->path_len == 0 && depth == 1) {
      return fail_at(ctx, ca->line,
                     "CA '%s': its parent '%s' has path_len 0 and cannot "
                     "have CAs below it",
                     ca->name, up->name);
    }
    if (up->path_len >= 0 && depth > up->path_len) {
      return fail_at(ctx, ca->line,
                     "CA '%s' is %d levels below CA '%s', whose path_len %d "
                     "allows %d",
                     ca->name, depth, up->name, up->path_len, up->path_len);
    }
    for (size_t i = 0; i < ca->num_permitted; i++) {
      const pki_name *s = &ca->permitted[i];
      int constrained = 0, inside = 0;
      for (size_t j = 0; j < up->num_permitted; j++) {
        if (up->permitted[j].type != s->type) continue;
        constrained = 1;
        if (subtree_within(s, &up->permitted[j])) inside = 1;
      }
      if (constrained && !inside) {
        return fail_at(ctx, ca->line,
                       "CA '%s': permitted %s subtree '%s' is wider than "
                       "what CA '%s' permits",
                       ca->name, pki_name_type_label(s->type), s->value,
                       up->name);
      }
      for (size_t j = 0; j < up->num_excluded; j++) {
        if (subtree_within(s, &up->excluded[j])) {
          return fail_at(ctx, ca->line,
                         "CA '%s': permitted %s subtree '%s' is excluded by "
                         "CA '%s'",
                         ca->name, pki_name_type_label(s->type), s->value,
                         up->name);
        }
      }
    }
  }
  return 1;
}

/* join_url sets |*out| to |base|, |name| and |suffix| joined. */
static int join_url(parse_ctx *ctx, char **out, const char *base, const char *name,
                    const char *suffix) {
  size_t len = strlen(base) + strlen(name) + strlen(suffix) + 1;
  *out = malloc(len);
  if (*out == NULL) return oom(ctx);
  snprintf(*out, len, "%s%s%s", base, name, suffix);
  return 1;
}

static int parse_ca(parse_ctx *ctx, pki_catalog *cat, size_t index,
                    yaml_node_t *node) {
  static const char *const keys[] = {
      "name",          "parent",   "common_name",      "key",
      "validity_days", "path_len", "name_constraints", "crl_validity_days"};
  enum { K_NAME, K_PARENT, K_CN, K_KEY, K_VALIDITY, K_PATH_LEN, K_NC, K_CRL_VALIDITY, K_NUM };
  yaml_node_t *f[K_NUM];
  pki_catalog_ca *ca = &cat->cas[index];
  ca->line = node_line(node);
  ca->path_len = -1;
  if (!get_fields(ctx, node, "a CA", keys, K_NUM, f) ||
      !require_field(ctx, node, f[K_NAME], "name", "CA") ||
      !get_string(ctx, f[K_NAME], "CA name", SUBJECT_ATTR_MAX, &ca->name) ||
      !check_ident(ctx, f[K_NAME], ca->name, "CA name")) {
    return 0;
  }
  if (find_ca_n(cat, index, ca->name) != NULL) {
    return fail_at(ctx, ca->line, "CA '%s' is defined twice", ca->name);
  }
  char what[96];
  snprintf(what, sizeof(what), "CA '%s'", ca->name);
  /* The bases were checked, and a CA name adds only [a-z0-9-]. */
  if ((cat->crl_url != NULL &&
       (!join_url(ctx, &ca->crl_url, cat->crl_url, ca->name, ".crl") ||
        !join_url(ctx, &ca->delta_crl_url, cat->crl_url, ca->name, "-delta.crl"))) ||
      (cat->ca_issuers_url != NULL &&
       !join_url(ctx, &ca->cert_url, cat->ca_issuers_url, ca->name, ".crt"))) {
    return 0;
  }

  if (index == 0 && f[K_PARENT] != NULL) {
    return fail_at(ctx, ca->line,
                   "CA '%s': the first CA must be the root, with no parent",
                   ca->name);
  }
  if (index > 0) {
    if (f[K_PARENT] == NULL) {
      return fail_at(ctx, ca->line,
                     "CA '%s' has no parent, but there must be exactly one "
                     "root ('%s')",
                     ca->name, cat->cas[0].name);
    }
    if (!get_string(ctx, f[K_PARENT], "parent", SUBJECT_ATTR_MAX,
                    &ca->parent)) {
      return 0;
    }
    const pki_catalog_ca *parent = find_ca_n(cat, index, ca->parent);
    if (parent == NULL) {
      return fail_at(ctx, node_line(f[K_PARENT]),
                     "CA '%s': parent '%.64s' is not listed before it (list "
                     "CAs root first, each after its parent)",
                     ca->name, ca->parent);
    }
  }

  if (!require_field(ctx, node, f[K_CN], "common_name", what) ||
      !get_string(ctx, f[K_CN], "common_name", SUBJECT_ATTR_MAX,
                  &ca->common_name)) {
    return 0;
  }

  ca->key_type = PKI_KEY_ECDSA_P256;
  ca->key_bits = 256;
  if (f[K_KEY] != NULL) {
    char field[128];
    snprintf(field, sizeof(field), "CA '%s': key", ca->name);
    if (!get_key_type(ctx, f[K_KEY], field, &ca->key_type, &ca->key_bits)) {
      return 0;
    }
    if (!pki_key_type_can_sign_certs(ca->key_type)) {
      return fail_at(ctx, node_line(f[K_KEY]),
                     "CA '%s': key type '%s' cannot be a CA key (use "
                     "ecdsa-p256, ecdsa-p384 or ed25519)",
                     ca->name,
                     pki_key_type_name(ca->key_type, ca->key_bits));
    }
  }

  if (!require_field(ctx, node, f[K_VALIDITY], "validity_days", what) ||
      !get_uint(ctx, f[K_VALIDITY], "validity_days",
                CATALOG_MAX_VALIDITY_DAYS, &ca->validity_days)) {
    return 0;
  }
  if (ca->validity_days == 0) {
    return fail_at(ctx, node_line(f[K_VALIDITY]),
                   "CA '%s': validity_days must be at least 1", ca->name);
  }
  const pki_catalog_ca *parent = parent_of(cat, ca);
  if (parent != NULL && ca->validity_days > parent->validity_days) {
    return fail_at(ctx, node_line(f[K_VALIDITY]),
                   "CA '%s': validity_days %u is longer than its parent "
                   "'%s''s %u",
                   ca->name, (unsigned)ca->validity_days, parent->name,
                   (unsigned)parent->validity_days);
  }

  if (index == 0) {
    ca->crl_validity_days = PKI_CATALOG_ROOT_CRL_VALIDITY_DAYS;
    if (f[K_CRL_VALIDITY] != NULL) {
      int line = node_line(f[K_CRL_VALIDITY]);
      if (!get_uint(ctx, f[K_CRL_VALIDITY], "crl_validity_days", CATALOG_MAX_VALIDITY_DAYS,
                    &ca->crl_validity_days)) {
        return 0;
      }
      if (ca->crl_validity_days == 0) {
        return fail_at(ctx, line, "CA '%s': crl_validity_days must be at least 1", ca->name);
      }
      if (ca->crl_validity_days > ca->validity_days) {
        return fail_at(ctx, line,
                       "CA '%s': crl_validity_days %u is longer than its validity_days %u",
                       ca->name, (unsigned)ca->crl_validity_days,
                       (unsigned)ca->validity_days);
      }
    }
  } else if (f[K_CRL_VALIDITY] != NULL) {
    /* Refused rather than ignored: pkid, not this setting, decides how
     * long the intermediates' CRLs last. */
    return fail_at(ctx, node_line(f[K_CRL_VALIDITY]),
                   "CA '%s': crl_validity_days is for the root only, whose CRL is "
                   "signed in a ceremony; pkid makes the intermediates' CRLs",
                   ca->name);
  }

  if (f[K_PATH_LEN] != NULL) {
    uint32_t v;
    if (!get_uint(ctx, f[K_PATH_LEN], "path_len", CATALOG_MAX_PATH_LEN, &v)) {
      return 0;
    }
    ca->path_len = (int)v;
  }
  if (f[K_NC] != NULL && !get_name_constraints(ctx, f[K_NC], ca)) return 0;
  return check_ca_against_ancestors(ctx, cat, ca);
}

/* ---- services ---- */

/* format_duration writes |s| seconds in the largest exact unit: "45d". */
static void format_duration(char *out, size_t out_size, uint32_t s) {
  if (s % 86400 == 0) {
    snprintf(out, out_size, "%ud", (unsigned)(s / 86400));
  } else if (s % 3600 == 0) {
    snprintf(out, out_size, "%uh", (unsigned)(s / 3600));
  } else if (s % 60 == 0) {
    snprintf(out, out_size, "%um", (unsigned)(s / 60));
  } else {
    snprintf(out, out_size, "%us", (unsigned)s);
  }
}

static int unique_add(parse_ctx *ctx, unique_set *set, const char *key,
                      int line, size_t service, int derived) {
  if (set->num == set->cap) {
    size_t cap = set->cap == 0 ? 64 : set->cap * 2;
    unique_entry *grown = realloc(set->entries, cap * sizeof(unique_entry));
    if (grown == NULL) return oom(ctx);
    set->entries = grown;
    set->cap = cap;
  }
  char *copy = strdup(key);
  if (copy == NULL) return oom(ctx);
  set->entries[set->num].key = copy;
  set->entries[set->num].line = line;
  set->entries[set->num].service = service;
  set->entries[set->num].derived = derived;
  set->num++;
  return 1;
}

static void unique_free(unique_set *set) {
  for (size_t i = 0; i < set->num; i++) free(set->entries[i].key);
  free(set->entries);
}

static int unique_cmp(const void *a, const void *b) {
  const unique_entry *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c != 0) return c;
  return (x->line > y->line) - (x->line < y->line);
}

/* unique_check sorts |set| and reports a key given twice, at the line of
 * its later use. Sorting keeps this O(n log n) for large catalogues. Of
 * several clashes it reports the first in the file, and there a clash of
 * the files as written rather than of the key or chain named after them. */
static int unique_check(parse_ctx *ctx, const pki_catalog *cat,
                        unique_set *set, const char *what) {
  if (set->num > 1) {
    qsort(set->entries, set->num, sizeof(unique_entry), unique_cmp);
  }
  const unique_entry *first = NULL, *second = NULL;
  for (size_t i = 1; i < set->num; i++) {
    const unique_entry *a = &set->entries[i - 1], *b = &set->entries[i];
    if (strcmp(a->key, b->key) != 0) continue;
    int derived = a->derived || b->derived;
    if (second == NULL || b->line < second->line ||
        (b->line == second->line && !derived &&
         (first->derived || second->derived))) {
      first = a;
      second = b;
    }
  }
  if (second == NULL) return 1;
  return fail_at(ctx, second->line,
                 "%s '%.200s' of service '%s' is already used by service '%s' "
                 "(line %d)%s",
                 what, second->key, cat->services[second->service].name,
                 cat->services[first->service].name, first->line,
                 first->derived || second->derived
                     ? "; each x.crt has x.key and x-chain.crt beside it"
                     : "");
}

typedef struct service_sets {
  unique_set names, identities, files;
} service_sets;

/* check_identity: a SPIFFE ID in the trust domain: "spiffe://" domain, then
 * a path of segments of letters, digits, '.', '-' and '_'. */
static int check_identity(parse_ctx *ctx, const pki_catalog *cat,
                          yaml_node_t *node, const char *identity,
                          const char *service) {
  if (!pki_name_check(PKI_NAME_URI, identity, ctx->err)) {
    char what[96];
    snprintf(what, sizeof(what), "service '%s': identity", service);
    return prefix_at(ctx, node_line(node), what);
  }
  size_t td_len = strlen(cat->trust_domain);
  const char *path = identity + strlen("spiffe://") + td_len;
  if (strncmp(identity, "spiffe://", strlen("spiffe://")) != 0 ||
      strncmp(identity + strlen("spiffe://"), cat->trust_domain, td_len) != 0 ||
      path[0] != '/' || path[1] == '\0') {
    return fail_at(ctx, node_line(node),
                   "service '%s': identity '%.200s' must be "
                   "spiffe://%s/<path>",
                   service, identity, cat->trust_domain);
  }
  for (const char *p = path; *p != '\0';) {
    p++; /* the '/' */
    size_t seg = 0;
    while (p[seg] != '\0' && p[seg] != '/') {
      char c = p[seg];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) {
        return fail_at(ctx, node_line(node),
                       "service '%s': identity '%.200s' has '%c' in its "
                       "path; SPIFFE IDs allow letters, digits, '.', '-' and "
                       "'_'",
                       service, identity, c);
      }
      seg++;
    }
    if (seg == 0 || (seg == 1 && p[0] == '.') ||
        (seg == 2 && p[0] == '.' && p[1] == '.')) {
      return fail_at(ctx, node_line(node),
                     "service '%s': identity '%.200s' has an empty, '.' or "
                     "'..' path segment",
                     service, identity);
    }
    p += seg;
  }
  return 1;
}

static int parse_certificates(parse_ctx *ctx, yaml_node_t *node,
                              pki_catalog_service *svc, size_t index,
                              service_sets *sets) {
  char what[96];
  snprintf(what, sizeof(what), "service '%s': certificates", svc->name);
  if (!get_seq(ctx, node, what, PKI_CATALOG_MAX_CERTS)) return 0;
  if (seq_len(node) == 0) {
    return fail_at(ctx, node_line(node), "%s: at least one is needed", what);
  }
  static const char *const keys[] = {"usage", "file"};
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       it < node->data.sequence.items.top; it++) {
    yaml_node_t *item = get_node(ctx, *it, node_line(node));
    yaml_node_t *f[2];
    if (item == NULL || !get_fields(ctx, item, what, keys, 2, f) ||
        !require_field(ctx, item, f[0], "usage", what) ||
        !require_field(ctx, item, f[1], "file", what)) {
      return 0;
    }
    const char *usage = get_scalar(ctx, f[0], "usage", 16);
    if (usage == NULL) return 0;
    pki_catalog_cert *cert = &svc->certs[svc->num_certs];
    if (strcmp(usage, "server") == 0) {
      cert->usage = PKI_USAGE_SERVER;
    } else if (strcmp(usage, "client") == 0) {
      cert->usage = PKI_USAGE_CLIENT;
    } else {
      return fail_at(ctx, node_line(f[0]),
                     "%s: usage '%.32s' is neither 'server' nor 'client'",
                     what, usage);
    }
    if (!get_string(ctx, f[1], "file", PATH_MAX_LEN, &cert->file)) return 0;
    svc->num_certs++;
    if (!check_rel_path(ctx, f[1], cert->file, "file")) return 0;
    size_t len = strlen(cert->file);
    if (len <= 4 || strcmp(cert->file + len - 4, ".crt") != 0) {
      return fail_at(ctx, node_line(f[1]),
                     "%s: file '%s' must end in '.crt' (its key and chain "
                     "are named after it)",
                     what, cert->file);
    }
    /* x.crt brings x.key and x-chain.crt: none of the three may be another
     * certificate's file. */
    char path[2 * PATH_MAX_LEN + 16];
    int stem = (int)(len - 4);
    snprintf(path, sizeof(path), "%s/%s", svc->dir, cert->file);
    if (!unique_add(ctx, &sets->files, path, node_line(f[1]), index, 0)) {
      return 0;
    }
    snprintf(path, sizeof(path), "%s/%.*s.key", svc->dir, stem, cert->file);
    if (!unique_add(ctx, &sets->files, path, node_line(f[1]), index, 1)) {
      return 0;
    }
    snprintf(path, sizeof(path), "%s/%.*s-chain.crt", svc->dir, stem,
             cert->file);
    if (!unique_add(ctx, &sets->files, path, node_line(f[1]), index, 1)) {
      return 0;
    }
  }
  return 1;
}

static int parse_permissions(parse_ctx *ctx, yaml_node_t *node,
                             pki_catalog_service *svc) {
  static const struct {
    const char *name;
    uint32_t bit;
  } kPerms[] = {
      {"admin", PKI_PERM_ADMIN},
      {"vault_access", PKI_PERM_VAULT_ACCESS},
      {"database_audit", PKI_PERM_DATABASE_AUDIT},
      {"privileged_access", PKI_PERM_PRIVILEGED_ACCESS},
      {"audit", PKI_PERM_AUDIT},
  };
  char what[96];
  snprintf(what, sizeof(what), "service '%s': permissions", svc->name);
  if (!get_seq(ctx, node, what, 16)) return 0;
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       it < node->data.sequence.items.top; it++) {
    yaml_node_t *item = get_node(ctx, *it, node_line(node));
    if (item == NULL) return 0;
    const char *text = get_scalar(ctx, item, what, 64);
    if (text == NULL) return 0;
    size_t i = 0;
    while (i < sizeof(kPerms) / sizeof(kPerms[0]) &&
           strcmp(kPerms[i].name, text) != 0) {
      i++;
    }
    if (i == sizeof(kPerms) / sizeof(kPerms[0])) {
      return fail_at(ctx, node_line(item),
                     "%s: unknown permission '%s' (known: admin, "
                     "privileged_access, vault_access, database_audit, audit)",
                     what, text);
    }
    if (svc->permissions & kPerms[i].bit) {
      return fail_at(ctx, node_line(item), "%s: '%s' is listed twice", what,
                     text);
    }
    svc->permissions |= kPerms[i].bit;
  }
  return 1;
}

/* Labels are checked for form only and not kept: they carry the seed's
 * deployment attributes (mtls_required, ssl_mode, ...) that pkid does not
 * act on. */
static int parse_labels(parse_ctx *ctx, yaml_node_t *node,
                        const pki_catalog_service *svc) {
  char what[96];
  snprintf(what, sizeof(what), "service '%s': labels", svc->name);
  if (node->type != YAML_MAPPING_NODE) {
    return fail_at(ctx, node_line(node), "%s must be a mapping", what);
  }
  size_t n = (size_t)(node->data.mapping.pairs.top -
                      node->data.mapping.pairs.start);
  if (n > CATALOG_MAX_LABELS) {
    return fail_at(ctx, node_line(node), "%s: more than %d labels", what,
                   CATALOG_MAX_LABELS);
  }
  for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
       pair < node->data.mapping.pairs.top; pair++) {
    yaml_node_t *key = get_node(ctx, pair->key, node_line(node));
    if (key == NULL) return 0;
    const char *name = get_scalar(ctx, key, "label name", 64);
    if (name == NULL) return 0;
    for (const char *p = name; *p != '\0'; p++) {
      if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '_')) {
        return fail_at(ctx, node_line(key),
                       "%s: label name '%s' must be lower-case letters, "
                       "digits and '_'",
                       what, name);
      }
    }
    for (yaml_node_pair_t *prev = node->data.mapping.pairs.start; prev < pair;
         prev++) {
      yaml_node_t *pk = yaml_document_get_node(&ctx->doc, prev->key);
      if (strcmp((const char *)pk->data.scalar.value, name) == 0) {
        return fail_at(ctx, node_line(key), "%s: label '%s' is given twice",
                       what, name);
      }
    }
    yaml_node_t *value = get_node(ctx, pair->value, node_line(key));
    if (value == NULL) return 0;
    char value_what[128];
    snprintf(value_what, sizeof(value_what), "%s: label '%s'", what, name);
    if (get_scalar(ctx, value, value_what, LABEL_VALUE_MAX) == NULL) return 0;
  }
  return 1;
}

static int parse_service(parse_ctx *ctx, pki_catalog *cat, size_t index,
                         yaml_node_t *node, service_sets *sets) {
  static const char *const keys[] = {
      "name",     "ca",       "identity",     "dir",
      "names",    "key",      "validity",     "rotation",
      "renew_before", "certificates", "permissions", "labels"};
  enum {
    K_NAME, K_CA, K_IDENTITY, K_DIR, K_NAMES, K_KEY, K_VALIDITY, K_ROTATION,
    K_RENEW_BEFORE, K_CERTS, K_PERMS, K_LABELS, K_NUM
  };
  yaml_node_t *f[K_NUM];
  pki_catalog_service *svc = &cat->services[index];
  svc->line = node_line(node);
  if (!get_fields(ctx, node, "a service", keys, K_NUM, f) ||
      !require_field(ctx, node, f[K_NAME], "name", "service") ||
      !get_string(ctx, f[K_NAME], "service name", SUBJECT_ATTR_MAX,
                  &svc->name) ||
      !check_ident(ctx, f[K_NAME], svc->name, "service name") ||
      !unique_add(ctx, &sets->names, svc->name, node_line(f[K_NAME]), index,
                  0)) {
    return 0;
  }
  char what[96];
  snprintf(what, sizeof(what), "service '%s'", svc->name);

  if (!require_field(ctx, node, f[K_CA], "ca", what) ||
      !get_string(ctx, f[K_CA], "ca", SUBJECT_ATTR_MAX, &svc->ca)) {
    return 0;
  }
  const pki_catalog_ca *ca = find_ca_n(cat, cat->num_cas, svc->ca);
  if (ca == NULL) {
    return fail_at(ctx, node_line(f[K_CA]), "service '%s': unknown CA '%.64s'",
                   svc->name, svc->ca);
  }
  if (ca->parent == NULL) {
    return fail_at(ctx, node_line(f[K_CA]),
                   "service '%s': CA '%s' is the offline root, which issues "
                   "no service certificates",
                   svc->name, ca->name);
  }

  if (!require_field(ctx, node, f[K_IDENTITY], "identity", what) ||
      !get_string(ctx, f[K_IDENTITY], "identity", 2048, &svc->identity) ||
      !check_identity(ctx, cat, f[K_IDENTITY], svc->identity, svc->name) ||
      !unique_add(ctx, &sets->identities, svc->identity,
                  node_line(f[K_IDENTITY]), index, 0)) {
    return 0;
  }
  pki_name id = {PKI_NAME_URI, svc->identity};
  if (!check_name_fits(ctx, cat, ca, &id, node_line(f[K_IDENTITY]),
                       svc->name)) {
    return 0;
  }

  if (!require_field(ctx, node, f[K_DIR], "dir", what) ||
      !get_string(ctx, f[K_DIR], "dir", PATH_MAX_LEN, &svc->dir) ||
      !check_rel_path(ctx, f[K_DIR], svc->dir, "dir")) {
    return 0;
  }

  if (f[K_NAMES] != NULL) {
    /* dns, ip and email: the identity is the one URI. */
    int *lines = NULL;
    char names_what[96];
    snprintf(names_what, sizeof(names_what), "service '%s': names", svc->name);
    int ok = get_name_lists(ctx, f[K_NAMES], names_what, 0, 0xb, &svc->names,
                            &svc->num_names, &lines);
    for (size_t i = 0; ok && i < svc->num_names; i++) {
      ok = check_name_fits(ctx, cat, ca, &svc->names[i], lines[i], svc->name);
    }
    free(lines);
    if (!ok) return 0;
  }

  char field[128];
  snprintf(field, sizeof(field), "service '%s': key", svc->name);
  if (!parse_service_keys(ctx, f[K_KEY], field, svc)) return 0;

  svc->validity_s = CATALOG_DEFAULT_VALIDITY_S;
  int validity_line = svc->line;
  if (f[K_VALIDITY] != NULL) {
    validity_line = node_line(f[K_VALIDITY]);
    snprintf(field, sizeof(field), "service '%s': validity", svc->name);
    if (!get_duration(ctx, f[K_VALIDITY], field, &svc->validity_s)) {
      return 0;
    }
  }
  if ((uint64_t)svc->validity_s > (uint64_t)ca->validity_days * 86400) {
    char text[32];
    format_duration(text, sizeof(text), svc->validity_s);
    return fail_at(ctx, validity_line,
                   "service '%s': validity %s is longer than CA '%s''s %u "
                   "days",
                   svc->name, text, ca->name, (unsigned)ca->validity_days);
  }
  if (f[K_ROTATION] != NULL) {
    snprintf(field, sizeof(field), "service '%s': rotation", svc->name);
    if (!get_duration(ctx, f[K_ROTATION], field, &svc->rotation_s)) {
      return 0;
    }
    if (svc->rotation_s >= svc->validity_s) {
      return fail_at(ctx, node_line(f[K_ROTATION]),
                     "service '%s': rotation must be shorter than validity",
                     svc->name);
    }
  }
  if (f[K_RENEW_BEFORE] != NULL) {
    snprintf(field, sizeof(field), "service '%s': renew_before", svc->name);
    if (!get_duration(ctx, f[K_RENEW_BEFORE], field, &svc->renew_before_s)) {
      return 0;
    }
    if (svc->renew_before_s >= svc->validity_s) {
      return fail_at(ctx, node_line(f[K_RENEW_BEFORE]),
                     "service '%s': renew_before must be shorter than "
                     "validity",
                     svc->name);
    }
  }

  if (!require_field(ctx, node, f[K_CERTS], "certificates", what) ||
      !parse_certificates(ctx, f[K_CERTS], svc, index, sets)) {
    return 0;
  }
  if (f[K_PERMS] != NULL && !parse_permissions(ctx, f[K_PERMS], svc)) {
    return 0;
  }
  if (f[K_LABELS] != NULL && !parse_labels(ctx, f[K_LABELS], svc)) return 0;
  return 1;
}

/* ---- the top level ---- */

/* get_http_url reads a URL that relying parties fetch without TLS. */
static int get_http_url(parse_ctx *ctx, yaml_node_t *node, const char *what,
                        size_t max_len, char **out) {
  if (!get_string(ctx, node, what, max_len, out)) return 0;
  if (!pki_name_check(PKI_NAME_URI, *out, ctx->err)) {
    return prefix_at(ctx, node_line(node), what);
  }
  if (strncmp(*out, "http://", 7) != 0) {
    return fail_at(ctx, node_line(node), "%s '%.200s' must start with http://",
                   what, *out);
  }
  return 1;
}

/* get_base_url reads a base to which CA names are appended: an http URL
 * ending in "/", without query or fragment, which would end up between the
 * base and the name. Short enough that base and name stay within a URI's
 * 2048 characters. */
static int get_base_url(parse_ctx *ctx, yaml_node_t *node, const char *what,
                        char **out) {
  if (!get_http_url(ctx, node, what, CATALOG_MAX_BASE_URL, out)) return 0;
  size_t len = strlen(*out);
  if (strpbrk(*out, "?#") != NULL || (*out)[len - 1] != '/') {
    return fail_at(ctx, node_line(node),
                   "%s '%.200s' must end in '/' and have no '?' or '#': the "
                   "CA's file name is appended to it",
                   what, *out);
  }
  return 1;
}

static int parse_catalog(parse_ctx *ctx, pki_catalog *cat, yaml_node_t *root) {
  static const char *const keys[] = {"trust_domain", "organization", "ocsp_url",
                                     "cas",          "services",     "crl_url",
                                     "ca_issuers_url"};
  enum { K_TD, K_ORG, K_OCSP, K_CAS, K_SERVICES, K_CRL, K_CA_ISSUERS, K_NUM };
  yaml_node_t *f[K_NUM];
  if (!get_fields(ctx, root, "the catalogue", keys, K_NUM, f)) return 0;
  /* All but the URL bases are required. */
  for (size_t i = 0; i < K_CRL; i++) {
    if (!require_field(ctx, root, f[i], keys[i], "catalogue")) return 0;
  }

  if (!get_string(ctx, f[K_TD], "trust_domain", 253, &cat->trust_domain)) {
    return 0;
  }
  if (!pki_name_check(PKI_NAME_DNS, cat->trust_domain, ctx->err)) {
    return prefix_at(ctx, node_line(f[K_TD]), "trust_domain");
  }
  for (const char *p = cat->trust_domain; *p != '\0'; p++) {
    /* SPIFFE trust domains are lower case, and no wildcard. */
    if ((*p >= 'A' && *p <= 'Z') || *p == '*') {
      return fail_at(ctx, node_line(f[K_TD]),
                     "trust_domain '%s' must be lower case, without wildcard",
                     cat->trust_domain);
    }
  }

  if (!get_string(ctx, f[K_ORG], "organization", SUBJECT_ATTR_MAX,
                  &cat->organization)) {
    return 0;
  }

  /* RFC 5019: OCSP is fetched over plain HTTP; https would need OCSP to
   * check the responder's own certificate. */
  if (!get_http_url(ctx, f[K_OCSP], "ocsp_url", 2048, &cat->ocsp_url)) return 0;
  /* The same holds of CRLs and CA certificates (RFC 5280 4.2.1.13,
   * 4.2.2.1: an "http" URI names the DER object itself). */
  if (f[K_CRL] != NULL && !get_base_url(ctx, f[K_CRL], "crl_url", &cat->crl_url)) {
    return 0;
  }
  if (f[K_CA_ISSUERS] != NULL &&
      !get_base_url(ctx, f[K_CA_ISSUERS], "ca_issuers_url", &cat->ca_issuers_url)) {
    return 0;
  }

  if (!get_seq(ctx, f[K_CAS], "cas", CATALOG_MAX_CAS)) return 0;
  size_t num_cas = seq_len(f[K_CAS]);
  if (num_cas == 0) {
    return fail_at(ctx, node_line(f[K_CAS]), "cas: at least the root is needed");
  }
  cat->cas = calloc(num_cas, sizeof(pki_catalog_ca));
  if (cat->cas == NULL) return oom(ctx);
  for (size_t i = 0; i < num_cas; i++) {
    yaml_node_t *item =
        get_node(ctx, f[K_CAS]->data.sequence.items.start[i], node_line(f[K_CAS]));
    if (item == NULL) return 0;
    cat->num_cas = i + 1;
    if (!parse_ca(ctx, cat, i, item)) return 0;
  }

  if (!get_seq(ctx, f[K_SERVICES], "services", CATALOG_MAX_SERVICES)) return 0;
  size_t num_services = seq_len(f[K_SERVICES]);
  if (num_services > 0) {
    cat->services = calloc(num_services, sizeof(pki_catalog_service));
    if (cat->services == NULL) return oom(ctx);
  }
  service_sets sets;
  memset(&sets, 0, sizeof(sets));
  int ok = 1;
  for (size_t i = 0; ok && i < num_services; i++) {
    yaml_node_t *item = get_node(ctx, f[K_SERVICES]->data.sequence.items.start[i],
                                 node_line(f[K_SERVICES]));
    if (item == NULL) {
      ok = 0;
      break;
    }
    cat->num_services = i + 1;
    ok = parse_service(ctx, cat, i, item, &sets);
  }
  ok = ok && unique_check(ctx, cat, &sets.names, "name") &&
       unique_check(ctx, cat, &sets.identities, "identity") &&
       unique_check(ctx, cat, &sets.files, "file");
  unique_free(&sets.names);
  unique_free(&sets.identities);
  unique_free(&sets.files);
  return ok;
}

/* yaml_error reports what libyaml found wrong, at its line. Reader errors
 * (bad encoding) carry an offset rather than a mark. */
static void yaml_error(const yaml_parser_t *parser, const char *source,
                       const char *yaml, size_t yaml_len, pki_err *err) {
  size_t line;
  if (parser->error == YAML_READER_ERROR) {
    line = 1;
    for (size_t i = 0; i < parser->problem_offset && i < yaml_len; i++) {
      if (yaml[i] == '\n') line++;
    }
  } else {
    line = parser->problem_mark.line + 1;
  }
  /* libyaml 0.2.5's loader returns failure with no error set when it runs
   * out of memory copying a node's default tag (yaml_parser_load_scalar and
   * its siblings): that is out of memory too, not a syntax error. */
  if (parser->error == YAML_MEMORY_ERROR || parser->error == YAML_NO_ERROR) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "%s: out of memory parsing YAML", source);
    return;
  }
  PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: YAML syntax error: %s%s%s", source,
          line, parser->problem != NULL ? parser->problem : "unknown",
          parser->context != NULL ? ", " : "",
          parser->context != NULL ? parser->context : "");
}

pki_catalog *pki_catalog_load_mem(const char *source, const char *yaml,
                                  size_t yaml_len, pki_err *err) {
  if (source == NULL) source = "catalogue";
  if (yaml == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: no catalogue text", source);
    return NULL;
  }
  if (yaml_len > CATALOG_MAX_BYTES) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: catalogue is %zu bytes, more than %d",
            source, yaml_len, CATALOG_MAX_BYTES);
    return NULL;
  }

  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    /* Its only failure is an allocation's. */
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "%s: out of memory setting up the YAML parser",
            source);
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, yaml_len);

  parse_ctx ctx;
  memset(&ctx, 0, sizeof(ctx));
  ctx.source = source;
  ctx.err = err;
  pki_catalog *cat = NULL;
  int have_doc = 0, ok = 0;

  if (!yaml_parser_load(&parser, &ctx.doc)) {
    yaml_error(&parser, source, yaml, yaml_len, err);
    goto done;
  }
  have_doc = 1;
  yaml_node_t *root = yaml_document_get_root_node(&ctx.doc);
  if (root == NULL) {
    fail_at(&ctx, 1, "the catalogue is empty");
    goto done;
  }
  /* One document only: a second one would be silently ignored. */
  yaml_document_t extra;
  if (!yaml_parser_load(&parser, &extra)) {
    yaml_error(&parser, source, yaml, yaml_len, err);
    goto done;
  }
  yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
  int extra_line = extra_root != NULL ? node_line(extra_root) : 0;
  yaml_document_delete(&extra);
  if (extra_root != NULL) {
    fail_at(&ctx, extra_line, "more than one YAML document");
    goto done;
  }

  ctx.num_nodes = (size_t)(ctx.doc.nodes.top - ctx.doc.nodes.start);
  ctx.seen = calloc(ctx.num_nodes, 1);
  cat = calloc(1, sizeof(pki_catalog));
  if (ctx.seen == NULL || cat == NULL || (cat->source = strdup(source)) == NULL) {
    oom(&ctx);
    goto done;
  }
  /* The root node is index 1. */
  root = get_node(&ctx, 1, 1);
  ok = root != NULL && parse_catalog(&ctx, cat, root);

done:
  if (have_doc) yaml_document_delete(&ctx.doc);
  yaml_parser_delete(&parser);
  free(ctx.seen);
  if (!ok) {
    pki_catalog_free(cat);
    return NULL;
  }
  return cat;
}

pki_catalog *pki_catalog_load_file(const char *path, pki_err *err) {
  uint8_t *data;
  size_t len;
  if (!pki_file_read(&data, &len, path, CATALOG_MAX_BYTES, err)) return NULL;
  pki_catalog *cat = pki_catalog_load_mem(path, (const char *)data, len, err);
  free(data);
  return cat;
}

pki_catalog *pki_catalog_default(pki_err *err) {
  return pki_catalog_load_mem("deploy/catalog.yaml (built in)",
                              pki_catalog_default_yaml,
                              pki_catalog_default_yaml_len, err);
}

void pki_catalog_free(pki_catalog *cat) {
  if (cat == NULL) return;
  for (size_t i = 0; i < cat->num_cas; i++) {
    pki_catalog_ca *ca = &cat->cas[i];
    free(ca->name);
    free(ca->parent);
    free(ca->common_name);
    pki_names_free(ca->permitted, ca->num_permitted);
    pki_names_free(ca->excluded, ca->num_excluded);
    free(ca->crl_url);
    free(ca->delta_crl_url);
    free(ca->cert_url);
  }
  free(cat->cas);
  for (size_t i = 0; i < cat->num_services; i++) {
    pki_catalog_service *svc = &cat->services[i];
    free(svc->name);
    free(svc->ca);
    free(svc->identity);
    free(svc->dir);
    pki_names_free(svc->names, svc->num_names);
    for (size_t j = 0; j < svc->num_certs; j++) free(svc->certs[j].file);
  }
  free(cat->services);
  free(cat->source);
  free(cat->trust_domain);
  free(cat->organization);
  free(cat->ocsp_url);
  free(cat->crl_url);
  free(cat->ca_issuers_url);
  free(cat);
}

const pki_catalog_ca *pki_catalog_root(const pki_catalog *cat) {
  if (cat == NULL || cat->num_cas == 0 || cat->cas[0].parent != NULL) {
    return NULL;
  }
  return &cat->cas[0];
}

const pki_catalog_ca *pki_catalog_find_ca(const pki_catalog *cat,
                                          const char *name) {
  if (cat == NULL || name == NULL) return NULL;
  return find_ca_n(cat, cat->num_cas, name);
}

const pki_catalog_service *pki_catalog_find_service(const pki_catalog *cat,
                                                    const char *name) {
  if (cat == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < cat->num_services; i++) {
    if (cat->services[i].name != NULL &&
        strcmp(cat->services[i].name, name) == 0) {
      return &cat->services[i];
    }
  }
  return NULL;
}

const pki_catalog_service *pki_catalog_find_identity(const pki_catalog *cat,
                                                     const char *identity) {
  if (cat == NULL || identity == NULL) return NULL;
  for (size_t i = 0; i < cat->num_services; i++) {
    if (cat->services[i].identity != NULL &&
        strcmp(cat->services[i].identity, identity) == 0) {
      return &cat->services[i];
    }
  }
  return NULL;
}

int pki_duration_parse(uint32_t *out_s, const char *text, pki_err *err) {
  if (text == NULL || text[0] == '\0') {
    PKI_ERR(err, PKI_ERR_INVALID, "empty duration");
    return 0;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (text[i] >= '0' && text[i] <= '9' && i < 11) {
    v = v * 10 + (uint64_t)(text[i] - '0');
    i++;
  }
  uint64_t unit = 0;
  if (i > 0 && text[i] != '\0' && text[i + 1] == '\0') {
    switch (text[i]) {
      case 'd': unit = 86400; break;
      case 'h': unit = 3600; break;
      case 'm': unit = 60; break;
      case 's': unit = 1; break;
      default: break;
    }
  }
  if (unit == 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "duration '%.32s' must be a number followed by d, h, m or s, "
            "like 30d or 24h",
            text);
    return 0;
  }
  if (v == 0 || v * unit > UINT32_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "duration '%.32s' must be more than 0 and at most %u seconds",
            text, (unsigned)UINT32_MAX);
    return 0;
  }
  *out_s = (uint32_t)(v * unit);
  return 1;
}
