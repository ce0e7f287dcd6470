/* pkictl: the command line of pkid's clients and ceremonies.
 *
 *   pkictl ceremony root          make the offline root (air-gapped machine)
 *   pkictl ceremony intermediate  have the root sign the intermediates
 *   pkictl ceremony demo          the whole hierarchy and every service, at once
 *   pkictl issue --offline        sign a service's certificates with its CA key
 *   pkictl inspect FILE           summarise a certificate or CSR
 *   pkictl journal verify DIR     check a journal's records and hash chain
 *   pkictl token create           a one-time bootstrap token for a service
 *
 * Exit status: 0 on success, 1 on failure (the message says why), 2 on a
 * usage error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/ceremony.h"
#include "client/inspect.h"
#include "client/journal_cmd.h"
#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/token.h"

#define ENV_CA_PASSPHRASE "PKID_CA_PASSPHRASE"
#define ENV_ROOT_PASSPHRASE "PKID_ROOT_PASSPHRASE"
#define MAX_SHARES 255

static const char kUsage[] =
    "usage: pkictl COMMAND [options]\n"
    "\n"
    "Offline ceremonies (on the air-gapped machine that holds the root):\n"
    "  ceremony root --out DIR [--split M/N | --root-passphrase-file F]\n"
    "      Make the self-signed root CA. Its key is sealed under a passphrase\n"
    "      (file, or $" ENV_ROOT_PASSPHRASE "), or under a random secret split\n"
    "      into N custodian shares, any M of which rebuild it.\n"
    "  ceremony intermediate --out DIR [--ca NAME]\n"
    "      (--share FILE ... | --root-passphrase-file F) [--passphrase-file F]\n"
    "      The root signs the intermediates (all, or NAME). Their keys are\n"
    "      sealed under the CA passphrase (file, or $" ENV_CA_PASSPHRASE ").\n"
    "  ceremony demo --out DIR [--passphrase-file F]\n"
    "      Build the whole hierarchy and every catalogue service's certificates.\n"
    "      The root is split 3-of-5. Without a passphrase file or\n"
    "      $" ENV_CA_PASSPHRASE ", a random one is made in DIR/ca-passphrase (0600).\n"
    "  issue --offline --out DIR --service NAME [--usage server|client]\n"
    "      [--csr FILE] [--passphrase-file F]\n"
    "      Sign a service's certificates with its intermediate's key.\n"
    "\n"
    "Enrollment:\n"
    "  token create --out DIR --service NAME [--ttl 1h]\n"
    "      Print a one-time bootstrap token: a service with no certificate yet\n"
    "      presents it to pkid once, for its first certificate. The token key is\n"
    "      DIR/bootstrap/token.key (made if missing; pkid reads it at start).\n"
    "\n"
    "Tools:\n"
    "  inspect FILE   Summarise a certificate or certificate request (PEM or DER).\n"
    "  journal verify DIR\n"
    "                 Check every record, CRC and hash link of pkid's journal.\n"
    "\n"
    "Every command takes --catalog FILE (default: the built-in copy of\n"
    "deploy/catalog.yaml).\n";

static int fail(const pki_err *err) {
  fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err->code), err->msg);
  return 1;
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "pkictl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nRun 'pkictl help' for usage.\n");
  return 2;
}

/* Options shared by the ceremony and offline commands. */
typedef struct options {
  const char *out;
  const char *catalog;
  const char *passphrase_file;
  const char *root_passphrase_file;
  const char *split;
  const char *ca;
  const char *service;
  const char *usage;
  const char *csr;
  const char *ttl;
  const char *shares[MAX_SHARES];
  size_t num_shares;
  int offline;
} options;

enum {
  OPT_OUT = 1000,
  OPT_CATALOG,
  OPT_PASSPHRASE_FILE,
  OPT_ROOT_PASSPHRASE_FILE,
  OPT_SPLIT,
  OPT_CA,
  OPT_SERVICE,
  OPT_USAGE,
  OPT_CSR,
  OPT_SHARE,
  OPT_OFFLINE,
  OPT_TTL,
};

static const struct option kOptions[] = {
    {"out", required_argument, NULL, OPT_OUT},
    {"catalog", required_argument, NULL, OPT_CATALOG},
    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
    {"root-passphrase-file", required_argument, NULL, OPT_ROOT_PASSPHRASE_FILE},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"ca", required_argument, NULL, OPT_CA},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"usage", required_argument, NULL, OPT_USAGE},
    {"csr", required_argument, NULL, OPT_CSR},
    {"share", required_argument, NULL, OPT_SHARE},
    {"offline", no_argument, NULL, OPT_OFFLINE},
    {"ttl", required_argument, NULL, OPT_TTL},
    {NULL, 0, NULL, 0},
};

static int parse_options(options *o, int argc, char **argv) {
  memset(o, 0, sizeof(*o));
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kOptions, NULL)) != -1) {
    switch (c) {
      case OPT_OUT: o->out = optarg; break;
      case OPT_CATALOG: o->catalog = optarg; break;
      case OPT_PASSPHRASE_FILE: o->passphrase_file = optarg; break;
      case OPT_ROOT_PASSPHRASE_FILE: o->root_passphrase_file = optarg; break;
      case OPT_SPLIT: o->split = optarg; break;
      case OPT_CA: o->ca = optarg; break;
      case OPT_SERVICE: o->service = optarg; break;
      case OPT_USAGE: o->usage = optarg; break;
      case OPT_CSR: o->csr = optarg; break;
      case OPT_OFFLINE: o->offline = 1; break;
      case OPT_TTL: o->ttl = optarg; break;
      case OPT_SHARE:
        if (o->num_shares == MAX_SHARES) return usage_error("too many shares%s", "");
        o->shares[o->num_shares++] = optarg;
        break;
      default:
        return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc) return usage_error("unexpected argument '%s'", argv[optind]);
  if (o->out == NULL) return usage_error("--out DIR is required%s", "");
  return 0;
}

static pki_catalog *load_catalog(const options *o, pki_err *err) {
  return o->catalog != NULL ? pki_catalog_load_file(o->catalog, err)
                            : pki_catalog_default(err);
}

/* ca_passphrase reads the CA passphrase from --passphrase-file or the
 * environment. */
static int ca_passphrase(ceremony_secret *out, const options *o, pki_err *err) {
  return ceremony_secret_read(out, o->passphrase_file, ENV_CA_PASSPHRASE, err);
}

static int cmd_root(const options *o, const pki_catalog *cat, pki_err *err) {
  unsigned m = 0, n = 0;
  if (o->split != NULL) {
    char extra;
    if (sscanf(o->split, "%u/%u%c", &m, &n, &extra) != 2 || m < 1 || m > n || n > 255) {
      PKI_ERR(err, PKI_ERR_INVALID, "--split wants M/N with 1 <= M <= N <= 255, not '%s'",
              o->split);
      return 0;
    }
    return ceremony_root(cat, o->out, NULL, m, n, err);
  }
  ceremony_secret pass;
  if (!ceremony_secret_read(&pass, o->root_passphrase_file, ENV_ROOT_PASSPHRASE, err)) {
    return 0;
  }
  int ok = ceremony_root(cat, o->out, &pass, 0, 0, err);
  ceremony_secret_cleanup(&pass);
  return ok;
}

static int cmd_intermediate(const options *o, const pki_catalog *cat, pki_err *err) {
  ceremony_secret root, pass;
  int ok;
  if (o->num_shares > 0) {
    ok = ceremony_secret_from_shares(&root, o->shares, o->num_shares, err);
  } else {
    ok = ceremony_secret_read(&root, o->root_passphrase_file, ENV_ROOT_PASSPHRASE, err);
  }
  if (!ok) return 0;
  ok = ca_passphrase(&pass, o, err) &&
       ceremony_intermediate(cat, o->out, &root, &pass, o->ca, err);
  ceremony_secret_cleanup(&root);
  ceremony_secret_cleanup(&pass);
  return ok;
}

static int cmd_demo(const options *o, const pki_catalog *cat, pki_err *err) {
  ceremony_secret pass;
  char path[1100];
  const char *file = o->passphrase_file;
  if (file == NULL && getenv(ENV_CA_PASSPHRASE) == NULL) {
    snprintf(path, sizeof(path), "%s/ca-passphrase", o->out);
    file = path;
    if (!ceremony_make_passphrase_file(path, err)) return 0;
  }
  int ok = ceremony_secret_read(&pass, file, ENV_CA_PASSPHRASE, err) &&
           ceremony_demo(cat, o->out, &pass, err);
  ceremony_secret_cleanup(&pass);
  if (ok) {
    printf("Demo hierarchy written to %s:\n"
           "  root CA          %s/root-ca/certs/root-ca.crt (key split 3-of-5 in root-ca/shares)\n"
           "  intermediates    %s/intermediate-ca/<ca>/certs/\n"
           "  services         %s/service-certificates/\n"
           "  trust stores     %s/trust-stores/\n",
           o->out, o->out, o->out, o->out, o->out);
  }
  return ok;
}

static int cmd_issue(const options *o, const pki_catalog *cat, pki_err *err) {
  if (!o->offline) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED,
            "online issuance goes through pkid; use --offline to sign with a CA key here");
    return 0;
  }
  if (o->service == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "--service NAME is required");
    return 0;
  }
  unsigned usage = 0;
  if (o->usage != NULL) {
    if (strcmp(o->usage, "server") == 0) {
      usage = PKI_USAGE_SERVER;
    } else if (strcmp(o->usage, "client") == 0) {
      usage = PKI_USAGE_CLIENT;
    } else {
      PKI_ERR(err, PKI_ERR_INVALID, "--usage is server or client, not '%s'", o->usage);
      return 0;
    }
  }
  ceremony_secret pass;
  int ok = ca_passphrase(&pass, o, err) &&
           ceremony_issue_offline(cat, o->out, &pass, o->service, usage, o->csr, err);
  ceremony_secret_cleanup(&pass);
  return ok;
}

static int cmd_token_create(const options *o, const pki_catalog *cat, pki_err *err) {
  if (o->service == NULL || pki_catalog_find_service(cat, o->service) == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "--service must name a catalogue service");
    return 0;
  }
  uint32_t ttl = 3600;
  if (o->ttl != NULL && !pki_duration_parse(&ttl, o->ttl, err)) return 0;
  char key_path[1100], token[PKI_TOKEN_MAX_TEXT];
  uint8_t key[PKI_TOKEN_KEY_LEN];
  snprintf(key_path, sizeof(key_path), "%s/bootstrap/token.key", o->out);
  if (!pki_token_key_load(key, key_path, 1, err) ||
      !pki_token_make(token, sizeof(token), key, o->service, (int64_t)time(NULL) + ttl, err)) {
    return 0;
  }
  printf("%s\n", token);
  return 1;
}

typedef int (*command_fn)(const options *o, const pki_catalog *cat, pki_err *err);

static int run(command_fn fn, int argc, char **argv) {
  options o;
  int rc = parse_options(&o, argc, argv);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = load_catalog(&o, &err);
  if (cat == NULL) return fail(&err);
  int ok = fn(&o, cat, &err);
  pki_catalog_free(cat);
  return ok ? 0 : fail(&err);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "ceremony") == 0) {
    if (argc < 3) return usage_error("ceremony needs root, intermediate or demo%s", "");
    const char *step = argv[2];
    if (strcmp(step, "root") == 0) return run(cmd_root, argc - 2, argv + 2);
    if (strcmp(step, "intermediate") == 0) return run(cmd_intermediate, argc - 2, argv + 2);
    if (strcmp(step, "demo") == 0) return run(cmd_demo, argc - 2, argv + 2);
    return usage_error("unknown ceremony '%s'", step);
  }
  if (strcmp(cmd, "issue") == 0) return run(cmd_issue, argc - 1, argv + 1);
  if (strcmp(cmd, "inspect") == 0) {
    if (argc != 3) return usage_error("inspect takes one FILE%s", "");
    pki_err err;
    pki_err_clear(&err);
    return inspect_file(stdout, argv[2], &err) ? 0 : fail(&err);
  }
  if (strcmp(cmd, "token") == 0) {
    if (argc < 3 || strcmp(argv[2], "create") != 0) {
      return usage_error("token takes: create --out DIR --service NAME [--ttl 1h]%s", "");
    }
    return run(cmd_token_create, argc - 2, argv + 2);
  }
  if (strcmp(cmd, "journal") == 0) {
    if (argc != 4 || strcmp(argv[2], "verify") != 0) {
      return usage_error("journal takes: verify DIR%s", "");
    }
    pki_err err;
    pki_err_clear(&err);
    return journal_cmd_verify(stdout, argv[3], &err) ? 0 : fail(&err);
  }
  return usage_error("unknown command '%s'", cmd);
}
