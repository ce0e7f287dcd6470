#include "server/config.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "lib/file.h"

typedef struct field {
  const char *key;
  size_t str_offset;  /* into pkid_config for strings, or ... */
  size_t num_offset;  /* ... for numbers */
  int is_num;
} field;

#define STR(k) {#k, offsetof(pkid_config, k), 0, 0}
#define NUM(k) {#k, 0, offsetof(pkid_config, k), 1}
#define NUM_AS(key, k) {key, 0, offsetof(pkid_config, k), 1}
#define STR_AS(key, k) {key, offsetof(pkid_config, k), 0, 0}

static const field kTop[] = {
    STR(pki),     STR(journal), STR(listen),          STR(ocsp_listen),
    STR(admin_listen), STR(passphrase_file), STR(catalog), STR(postgres), STR(acme_listen), NUM(node),
    NUM(workers),
};
static const field kLimits[] = {
    NUM(max_conns),        NUM(max_streams),           NUM(idle_timeout_ms),
    NUM(handshake_timeout_ms), NUM(max_conns_per_address), NUM(max_call_ms),
    NUM(max_stream_ms),    NUM(max_connection_age_ms), NUM(identity_max_in_flight),
    NUM(identity_rate),    NUM(journal_segment_bytes), NUM(refusal_window_s),
};
static const field kCrl[] = {
    NUM_AS("interval_s", crl_interval_s),
    NUM_AS("delta_interval_s", crl_delta_interval_s),
    NUM_AS("validity_s", crl_validity_s),
    NUM_AS("batch_ms", crl_batch_ms),
};
static const field kCheckpoint[] = {
    NUM_AS("interval_s", checkpoint_interval_s),
    NUM_AS("records", checkpoint_records),
};

static const field kSiem[] = {
    STR_AS("collector", siem), STR_AS("ca", siem_ca),     STR_AS("name", siem_name),
    STR_AS("cert", siem_cert), STR_AS("key", siem_key), STR_AS("hostname", siem_hostname),
};

static int set_field(pkid_config *cfg, const field *f, const yaml_node_t *v, const char *path,
                     pki_err *err) {
  if (v->type != YAML_SCALAR_NODE) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: '%s' must be a value", path, v->start_mark.line + 1,
            f->key);
    return 0;
  }
  const char *text = (const char *)v->data.scalar.value;
  if (f->is_num) {
    char *end;
    unsigned long n = strtoul(text, &end, 10);
    if (*text == '\0' || *end != '\0' || n == 0 || n > 100000000) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: '%s' must be a positive number, not '%s'", path,
              v->start_mark.line + 1, f->key, text);
      return 0;
    }
    *(unsigned long *)((char *)cfg + f->num_offset) = n;
    return 1;
  }
  char **slot = (char **)((char *)cfg + f->str_offset);
  free(*slot);
  *slot = strdup(text);
  return *slot != NULL;
}

static int load_map(pkid_config *cfg, yaml_document_t *doc, yaml_node_t *map, const field *fields,
                    size_t num_fields, const char *path, pki_err *err) {
  if (map->type != YAML_MAPPING_NODE) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: expected a mapping", path, map->start_mark.line + 1);
    return 0;
  }
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    yaml_node_t *v = yaml_document_get_node(doc, p->value);
    if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s: malformed mapping", path);
      return 0;
    }
    const char *key = (const char *)k->data.scalar.value;
    if (fields == kTop && strcmp(key, "limits") == 0) {
      if (!load_map(cfg, doc, v, kLimits, sizeof(kLimits) / sizeof(kLimits[0]), path, err)) {
        return 0;
      }
      continue;
    }
    if (fields == kTop && strcmp(key, "crl") == 0) {
      if (!load_map(cfg, doc, v, kCrl, sizeof(kCrl) / sizeof(kCrl[0]), path, err)) return 0;
      continue;
    }
    if (fields == kTop && strcmp(key, "checkpoint") == 0) {
      if (!load_map(cfg, doc, v, kCheckpoint, sizeof(kCheckpoint) / sizeof(kCheckpoint[0]), path,
                    err)) {
        return 0;
      }
      continue;
    }
    if (fields == kTop && strcmp(key, "siem") == 0) {
      if (!load_map(cfg, doc, v, kSiem, sizeof(kSiem) / sizeof(kSiem[0]), path, err)) return 0;
      continue;
    }
    const field *f = NULL;
    for (size_t i = 0; i < num_fields; i++) {
      if (strcmp(fields[i].key, key) == 0) f = &fields[i];
    }
    if (f == NULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: unknown key '%s'", path, k->start_mark.line + 1,
              key);
      return 0;
    }
    if (!set_field(cfg, f, v, path, err)) return 0;
  }
  return 1;
}

int pkid_config_load(pkid_config *out, const char *path, pki_err *err) {
  memset(out, 0, sizeof(*out));
  uint8_t *text = NULL;
  size_t len;
  if (!pki_file_read(&text, &len, path, 1 << 20, err)) return 0;
  yaml_parser_t parser;
  yaml_document_t doc;
  int ok = 0;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s:%zu: %s", path, parser.problem_mark.line + 1,
            parser.problem != NULL ? parser.problem : "malformed YAML");
    yaml_parser_delete(&parser);
    free(text);
    return 0;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root == NULL) {
    ok = 1; /* an empty file sets nothing */
  } else {
    ok = load_map(out, &doc, root, kTop, sizeof(kTop) / sizeof(kTop[0]), path, err);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  free(text);
  if (!ok) pkid_config_cleanup(out);
  return ok;
}

void pkid_config_cleanup(pkid_config *cfg) {
  if (cfg == NULL) return;
  free(cfg->pki);
  free(cfg->journal);
  free(cfg->listen);
  free(cfg->ocsp_listen);
  free(cfg->admin_listen);
  free(cfg->passphrase_file);
  free(cfg->catalog);
  free(cfg->postgres);
  free(cfg->acme_listen);
  free(cfg->siem);
  free(cfg->siem_ca);
  free(cfg->siem_name);
  free(cfg->siem_cert);
  free(cfg->siem_key);
  free(cfg->siem_hostname);
  memset(cfg, 0, sizeof(*cfg));
}
