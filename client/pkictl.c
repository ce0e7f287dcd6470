/* pkictl: the command line of pkid's clients and ceremonies.
 *
 *   pkictl ceremony root          make the offline root (air-gapped machine)
 *   pkictl ceremony intermediate  have the root sign the intermediates
 *   pkictl ceremony demo          the whole hierarchy and every service, at once
 *   pkictl ceremony crl           sign the root's next CRL, maybe revoking an intermediate
 *   pkictl issue --offline        sign a service's certificates with its CA key
 *   pkictl inspect FILE           summarise a certificate or CSR
 *   pkictl crl fetch|inspect      fetch a CA's CRL, checked; summarise a CRL
 *   pkictl journal verify DIR     check a journal's records and hash chain
 *   pkictl audit DIR              query the journal as the audit trail
 *   pkictl token create           a one-time bootstrap token for a service
 *
 * Online, through pkid's gRPC API (libpkiclient, mutual TLS):
 *
 *   pkictl bootstrap              a first certificate, for a bootstrap token
 *   pkictl issue                  a certificate for a service (key made here)
 *   pkictl renew                  replace the certificate the client holds
 *   pkictl revoke                 revoke a certificate by serial
 *   pkictl status                 what pkid knows of a certificate
 *   pkictl bundle                 a trust store (a CA and its parents) or the root
 *   pkictl agent                  keep a service's certificates renewed (daemon)
 *   pkictl lb rotate|watch        the load balancer's hot rotation in haproxy
 *   pkictl acme eab create        an ACME external account binding key
 *
 * From the fleet's PostgreSQL (libpq, read-only):
 *
 *   pkictl fleet status           the nodes, their leases and shipping lag
 *   pkictl inventory              the fleet's certificates, filtered
 *
 * Exit status: 0 on success, 1 on failure (the message says why), 2 on a
 * usage error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/agent.h"
#include "client/lb_cmd.h"
#include "client/ceremony.h"
#include "client/crl_cmd.h"
#include "client/fleet_cmd.h"
#include "client/inspect.h"
#include "client/audit_cmd.h"
#include "client/journal_cmd.h"
#include "client/pkiclient.h"
#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/pki_tree.h"
#include "lib/token.h"

#define ENV_CA_PASSPHRASE "PKID_CA_PASSPHRASE"
#define ENV_ROOT_PASSPHRASE "PKID_ROOT_PASSPHRASE"
#define MAX_SHARES 255
#define DEFAULT_SERVER "127.0.0.1:8443"
#define DEFAULT_SERVER_NAME "pki-ca.cybersec-framework.local"

static const char kUsage[] =
    "usage: pkictl COMMAND [options]\n"
    "\n"
    "Offline ceremonies (on the air-gapped machine that holds the root):\n"
    "  ceremony root --out DIR [--split M/N | --root-passphrase-file F]\n"
    "      [--pkcs11 URI [--token-pin-file F]]\n"
    "      Make the self-signed root CA. Its key is sealed under a passphrase\n"
    "      (file, or $" ENV_ROOT_PASSPHRASE "), or under a random secret split\n"
    "      into N custodian shares, any M of which rebuild it. Also signs the\n"
    "      root's first CRL (see ceremony crl).\n"
    "  ceremony intermediate --out DIR [--ca NAME]\n"
    "      (--share FILE ... | --root-passphrase-file F) [--passphrase-file F]\n"
    "      [--pkcs11 URI [--token-pin-file F]]\n"
    "      The root signs the intermediates (all, or NAME). Their keys are\n"
    "      sealed under the CA passphrase (file, or $" ENV_CA_PASSPHRASE ").\n"
    "  ceremony demo --out DIR [--passphrase-file F]\n"
    "      [--root-pkcs11 URI] [--pkcs11 URI] [--token-pin-file F]\n"
    "      Build the whole hierarchy and every catalogue service's certificates.\n"
    "      The root is split 3-of-5. Without a passphrase file or\n"
    "      $" ENV_CA_PASSPHRASE ", a random one is made in DIR/ca-passphrase (0600).\n"
    "  Keys in a PKCS#11 token (an HSM): with --pkcs11 URI (RFC 7512, e.g.\n"
    "      'pkcs11:token=pkid-online?module-path=/usr/lib/softhsm/libsofthsm2.so')\n"
    "      root and intermediate make their keys inside that token, sensitive and\n"
    "      not extractable; demo takes the root's token as --root-pkcs11. The\n"
    "      tree keeps each key's URI (private/<ca>.key.pkcs11), and the secret\n"
    "      that would have sealed the key is the token's user PIN: the root's\n"
    "      passphrase or split secret (so M custodians' shares log in to the\n"
    "      root's token), the CA passphrase for the intermediates. A token\n"
    "      initialized with another PIN names it with --token-pin-file F; the\n"
    "      ceremony changes it to the secret.\n"
    "  ceremony crl --out DIR (--share FILE ... | --root-passphrase-file F)\n"
    "      [--revoke CA --reason ca-compromise|key-compromise|superseded|\n"
    "      cessation-of-operation|affiliation-changed|privilege-withdrawn|unspecified]\n"
    "      Sign the root's next CRL, DIR/crl/root.crl (DER) and root.crl.pem:\n"
    "      cRLNumber one more than the current file's, its entries kept, and\n"
    "      with --revoke that intermediate's certificate added. The root's key\n"
    "      is offline, so this ceremony is the only way its CRL is renewed. It\n"
    "      is valid for the root's crl_validity_days (catalogue; default 365);\n"
    "      pkid serves it and alerts once half of that has passed: run this\n"
    "      ceremony before, and copy the files to pkid's pki/crl/.\n"
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
    "Online, through pkid (errors name the gRPC status; exit 1):\n"
    "  bootstrap --token TOKEN --service NAME --usage server|client\n"
    "      --out-cert F --out-key F [--out-chain F] [--key-type T] [--validity 1h]\n"
    "      A first certificate without a client certificate, for a token from\n"
    "      'token create'. The key is made here and never sent.\n"
    "  issue --service NAME --usage server|client --out-cert F --out-key F\n"
    "      [--out-chain F] [--key-type ecdsa-p256|ecdsa-p384|ed25519|rsa-2048|\n"
    "      rsa-3072|rsa-4096] [--validity 1h]\n"
    "      A certificate for NAME (another service's needs an admin identity).\n"
    "  renew --out-cert F --out-key F [--out-chain F] [--key-type T]\n"
    "      Replace the certificate given by --cert/--key (or --as): same service\n"
    "      and usage, a new key.\n"
    "  revoke --serial HEX [--reason REASON] [--invalidity-date TIME] [--same-key]\n"
    "      REASON (RFC 5280 5.3.1): key-compromise, ca-compromise,\n"
    "      affiliation-changed, superseded, cessation-of-operation,\n"
    "      certificate-hold, privilege-withdrawn, aa-compromise or unspecified\n"
    "      (the default). TIME (5.3.2), when the key was compromised or the\n"
    "      certificate became invalid: 2026-11-30T12:00:00Z (UTC) or Unix seconds.\n"
    "      --same-key, with key-compromise only: every unexpired certificate of\n"
    "      the same key. Prints each serial revoked.\n"
    "  status --serial HEX\n"
    "      Print the certificate's state, service, usage, issuer, validity and\n"
    "      revocation.\n"
    "  bundle [--ca NAME] --out FILE [--accept-new-root]\n"
    "      Write NAME's trust store PEM (the CA, its parents, the root), or the\n"
    "      root certificate alone. A bundle whose root is not the root trusted\n"
    "      here (--root, or --pki's) is refused, since whoever swaps the root\n"
    "      owns the fleet; --accept-new-root installs it, for a root replaced\n"
    "      on purpose. A store that the bundle's root does not certify is\n"
    "      refused either way.\n"
    "  acme eab create --service NAME\n"
    "      Have pkid make an ACME external account binding key (RFC 8555 7.3.4)\n"
    "      for NAME, which must have a server certificate (an admin identity;\n"
    "      pkid must serve ACME). Prints 'kid: KID' and 'hmac-key: KEY'\n"
    "      (base64url), for the ACME client's --eab-kid and --eab-hmac-key. The\n"
    "      key is shown once: pkid journals the kid, never the key.\n"
    "  Files are replaced atomically; keys get mode 0600. Without --out-chain,\n"
    "  the chain follows the certificate in --out-cert.\n"
    "  Connection options:\n"
    "    --server HOST:PORT     pkid's gRPC address (default " DEFAULT_SERVER ")\n"
    "    --root FILE            the root certificate that vouches for pkid\n"
    "    --cert FILE --key FILE the client certificate (optionally followed by\n"
    "                           its chain, or with --chain FILE) and its key\n"
    "    --server-name NAME     the name pkid's certificate carries\n"
    "                           (default " DEFAULT_SERVER_NAME ")\n"
    "    --server-identity URI  pkid's identity, the URI SAN its certificate must\n"
    "                           carry (default: the catalogue's " PKC_PKID_SERVICE " identity)\n"
    "    --server-ca FILE       the CA certificate that must have issued pkid's\n"
    "                           (default: --pki's copy of the catalogue's CA of\n"
    "                           " PKC_PKID_SERVICE "; without one, that CA is checked by name)\n"
    "                           A server that fails these is not pkid: refused\n"
    "                           before anything is sent, UNAUTHENTICATED, no retry.\n"
    "    --timeout-ms N         deadline of each attempt (default 30000)\n"
    "    --pki DIR [--as SERVICE[:server|client]]\n"
    "                           take --root (and SERVICE's certificate, client by\n"
    "                           default, with its key and chain) from a demo tree\n"
    "  agent --pki DIR --as SERVICE[:server|client] [--certs server,client] [--once]\n"
    "      [--metrics-file F] [--reload-signal SIG --reload-pid PID | --reload-command CMD]\n"
    "      [--jitter PCT] [--check-interval-ms N] [--min-backoff-ms N --max-backoff-ms N]\n"
    "      Renew the service's certificates when due (renew_before, rotation or 2/3\n"
    "      of the lifetime, with jitter), replace the files, run the reload hook;\n"
    "      retry with backoff while pkid is down. Metrics go to --metrics-file.\n"
    "      Takes --server, --server-name, --server-identity, --server-ca, --root\n"
    "      and --timeout-ms as above; a server that is not pkid is retried only\n"
    "      after --max-backoff-ms.\n"
    "  lb rotate|watch|staple --pki DIR --as SERVICE --probe HOST:PORT\n"
    "      [--probe-name SNI] [--now] (--haproxy-socket SOCK --haproxy-cert NAME |\n"
    "      --reload-pid PID | --reload-command CMD) [--backups N] [--metrics-file F]\n"
    "      [--ocsp-url URL] [--check-interval-ms N] [--reload-wait-ms N]\n"
    "      The load balancer's rotation: validate rotation/lb-next (chain with\n"
    "      serverAuth, key, 24 h left, names, CA, OCSP good), back up active/,\n"
    "      swap it in haproxy (runtime API, or a reload of haproxy -W), probe the\n"
    "      frontend for the new certificate (else roll back), promote it and make\n"
    "      a new lb-next through pkid as --as SERVICE (an admin). rotate: once,\n"
    "      when due (renew_before) or --now; watch: on a schedule, keeping\n"
    "      lb-next and the OCSP staple fresh; staple: the serving certificate's\n"
    "      OCSP response into haproxy and active/lb-current.pem.ocsp, once.\n"
    "      Takes --server, --server-name, --server-identity, --server-ca, --root\n"
    "      and --timeout-ms as above.\n"
    "\n"
    "Fleet, from its PostgreSQL (read only; CONNINFO is a libpq connection string,\n"
    "'host=... port=... dbname=... user=...' or postgresql://..., never printed):\n"
    "  fleet status --postgres CONNINFO [--json]\n"
    "      Each node: host, version, start, lease left (or expired), journal and\n"
    "      shipped sequence numbers and the lag between them, the certificates\n"
    "      it issued and how many of those are revoked.\n"
    "  inventory --postgres CONNINFO [--service S] [--expiring-within 7d] [--node N]\n"
    "      [--revoked | --valid] [--json]\n"
    "      Certificates by not_after: serial, service, usage, CA, node, state\n"
    "      and revocation. --expiring-within: not expired yet, but within it.\n"
    "\n"
    "Tools:\n"
    "  inspect FILE   Summarise a certificate or certificate request (PEM or DER).\n"
    "  crl fetch (--ca NAME [--delta] | --url URL) --out FILE [--pem]\n"
    "      [--pki DIR | --ca-file FILE] [--base-url URL] [--max-size 256M]\n"
    "      [--timeout-ms N]\n"
    "                 Fetch a CA's CRL over HTTP (the catalogue's crl_url, or\n"
    "                 --base-url, + NAME.crl), check it against the CA's\n"
    "                 certificate (--pki tree or --ca-file) and that it is not\n"
    "                 older than FILE's, and replace FILE (DER, or PEM). With\n"
    "                 FILE.etag from the last fetch the request is conditional.\n"
    "  crl inspect FILE [--pki DIR | --ca-file FILE]\n"
    "                 Summarise each CRL of a DER or PEM file: issuer, number,\n"
    "                 updates, entries; with a CA, whether its signature verifies.\n"
    "  audit DIR [--service S] [--identity I] [--serial HEX] [--kind K]\n"
    "        [--since T] [--until T] [--table]\n"
    "                 Query the journal as the audit trail (every record's chain\n"
    "                 checked as it is read): JSON lines, or a table.\n"
    "  journal verify DIR [--checkpoint FILE (--audit-key PUB | --pki DIR)]\n"
    "                 Check every record, CRC and hash link of pkid's journal;\n"
    "                 with a checkpoint pkid signed (JOURNAL/checkpoint, the admin\n"
    "                 endpoint's /checkpoint), that its signature verifies with the\n"
    "                 audit key (DIR/audit/audit.pub) and that the journal still\n"
    "                 holds what it covers, unchanged.\n"
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
  const char *revoke; /* ceremony crl: the intermediate to revoke */
  const char *pkcs11;         /* ceremonies: the token that holds the keys made */
  const char *root_pkcs11;    /* ceremony demo: the root's token */
  const char *token_pin_file; /* ceremonies: the PIN the tokens were initialized with */
  /* Online commands. */
  const char *server;
  const char *root;
  const char *cert;
  const char *chain;
  const char *key;
  const char *server_name;
  const char *timeout_ms;
  const char *pki;
  const char *as;
  const char *token;
  const char *out_cert;
  const char *out_key;
  const char *out_chain;
  const char *key_type;
  const char *validity;
  const char *serial;
  const char *reason;
  const char *invalidity_date;
  int same_key;
  const char *server_identity;
  const char *server_ca;
  int accept_new_root;
  /* Set by run_online: the root certificate file the client trusts. */
  const char *trusted_root;
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
  OPT_REVOKE,
  OPT_SERVER,
  OPT_ROOT,
  OPT_CERT,
  OPT_CHAIN,
  OPT_KEY,
  OPT_SERVER_NAME,
  OPT_TIMEOUT_MS,
  OPT_PKI,
  OPT_AS,
  OPT_TOKEN,
  OPT_OUT_CERT,
  OPT_OUT_KEY,
  OPT_OUT_CHAIN,
  OPT_KEY_TYPE,
  OPT_VALIDITY,
  OPT_SERIAL,
  OPT_REASON,
  OPT_SERVER_IDENTITY,
  OPT_SERVER_CA,
  OPT_ACCEPT_NEW_ROOT,
  OPT_INVALIDITY_DATE,
  OPT_SAME_KEY,
  OPT_PKCS11,
  OPT_ROOT_PKCS11,
  OPT_TOKEN_PIN_FILE,
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
    {"revoke", required_argument, NULL, OPT_REVOKE},
    {"server", required_argument, NULL, OPT_SERVER},
    {"root", required_argument, NULL, OPT_ROOT},
    {"cert", required_argument, NULL, OPT_CERT},
    {"chain", required_argument, NULL, OPT_CHAIN},
    {"key", required_argument, NULL, OPT_KEY},
    {"server-name", required_argument, NULL, OPT_SERVER_NAME},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS},
    {"pki", required_argument, NULL, OPT_PKI},
    {"as", required_argument, NULL, OPT_AS},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"out-cert", required_argument, NULL, OPT_OUT_CERT},
    {"out-key", required_argument, NULL, OPT_OUT_KEY},
    {"out-chain", required_argument, NULL, OPT_OUT_CHAIN},
    {"key-type", required_argument, NULL, OPT_KEY_TYPE},
    {"validity", required_argument, NULL, OPT_VALIDITY},
    {"serial", required_argument, NULL, OPT_SERIAL},
    {"reason", required_argument, NULL, OPT_REASON},
    {"server-identity", required_argument, NULL, OPT_SERVER_IDENTITY},
    {"server-ca", required_argument, NULL, OPT_SERVER_CA},
    {"accept-new-root", no_argument, NULL, OPT_ACCEPT_NEW_ROOT},
    {"invalidity-date", required_argument, NULL, OPT_INVALIDITY_DATE},
    {"same-key", no_argument, NULL, OPT_SAME_KEY},
    {"pkcs11", required_argument, NULL, OPT_PKCS11},
    {"root-pkcs11", required_argument, NULL, OPT_ROOT_PKCS11},
    {"token-pin-file", required_argument, NULL, OPT_TOKEN_PIN_FILE},
    {NULL, 0, NULL, 0},
};

/* When --out is required. */
typedef enum out_rule {
  OUT_REQUIRED,
  OUT_IF_OFFLINE, /* issue: --offline --out DIR; online issue writes --out-cert */
  OUT_OPTIONAL,
} out_rule;

static int parse_options(options *o, int argc, char **argv, out_rule rule) {
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
      case OPT_REVOKE: o->revoke = optarg; break;
      case OPT_SERVER: o->server = optarg; break;
      case OPT_ROOT: o->root = optarg; break;
      case OPT_CERT: o->cert = optarg; break;
      case OPT_CHAIN: o->chain = optarg; break;
      case OPT_KEY: o->key = optarg; break;
      case OPT_SERVER_NAME: o->server_name = optarg; break;
      case OPT_TIMEOUT_MS: o->timeout_ms = optarg; break;
      case OPT_PKI: o->pki = optarg; break;
      case OPT_AS: o->as = optarg; break;
      case OPT_TOKEN: o->token = optarg; break;
      case OPT_OUT_CERT: o->out_cert = optarg; break;
      case OPT_OUT_KEY: o->out_key = optarg; break;
      case OPT_OUT_CHAIN: o->out_chain = optarg; break;
      case OPT_KEY_TYPE: o->key_type = optarg; break;
      case OPT_VALIDITY: o->validity = optarg; break;
      case OPT_SERIAL: o->serial = optarg; break;
      case OPT_REASON: o->reason = optarg; break;
      case OPT_SERVER_IDENTITY: o->server_identity = optarg; break;
      case OPT_SERVER_CA: o->server_ca = optarg; break;
      case OPT_ACCEPT_NEW_ROOT: o->accept_new_root = 1; break;
      case OPT_INVALIDITY_DATE: o->invalidity_date = optarg; break;
      case OPT_SAME_KEY: o->same_key = 1; break;
      case OPT_PKCS11: o->pkcs11 = optarg; break;
      case OPT_ROOT_PKCS11: o->root_pkcs11 = optarg; break;
      case OPT_TOKEN_PIN_FILE: o->token_pin_file = optarg; break;
      case OPT_SHARE:
        if (o->num_shares == MAX_SHARES) return usage_error("too many shares%s", "");
        o->shares[o->num_shares++] = optarg;
        break;
      default:
        return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc) return usage_error("unexpected argument '%s'", argv[optind]);
  if (o->out == NULL && (rule == OUT_REQUIRED || (rule == OUT_IF_OFFLINE && o->offline))) {
    return usage_error("--out DIR is required%s", "");
  }
  return 0;
}

static pki_catalog *load_catalog(const options *o, pki_err *err) {
  return o->catalog != NULL ? pki_catalog_load_file(o->catalog, err)
                            : pki_catalog_default(err);
}

/* ca_passphrase reads the CA passphrase from --passphrase-file or the
 * environment. */
static int ca_passphrase(pki_secret *out, const options *o, pki_err *err) {
  return pki_secret_read(out, o->passphrase_file, ENV_CA_PASSPHRASE, err);
}

/* A token named by --pkcs11 or --root-pkcs11, with the PIN it was
 * initialized with when --token-pin-file gives one (ceremony.h). */
typedef struct cli_token {
  ceremony_pkcs11 token;
  pki_secret initial_pin;
} cli_token;

static int cli_token_read(cli_token *out, const char *uri, const options *o, pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->token.uri = uri;
  if (uri == NULL || o->token_pin_file == NULL) return 1;
  out->token.initial_pin = &out->initial_pin;
  return pki_secret_read(&out->initial_pin, o->token_pin_file, NULL, err);
}

static void cli_token_cleanup(cli_token *t) { pki_secret_cleanup(&t->initial_pin); }

static int cmd_root(const options *o, const pki_catalog *cat, pki_err *err) {
  unsigned m = 0, n = 0;
  cli_token token;
  if (!cli_token_read(&token, o->pkcs11, o, err)) return 0;
  int ok = 0;
  if (o->split != NULL) {
    char extra;
    if (sscanf(o->split, "%u/%u%c", &m, &n, &extra) != 2 || m < 1 || m > n || n > 255) {
      PKI_ERR(err, PKI_ERR_INVALID, "--split wants M/N with 1 <= M <= N <= 255, not '%s'",
              o->split);
    } else {
      ok = ceremony_root(cat, o->out, NULL, m, n, &token.token, err);
    }
    cli_token_cleanup(&token);
    return ok;
  }
  pki_secret pass;
  if (pki_secret_read(&pass, o->root_passphrase_file, ENV_ROOT_PASSPHRASE, err)) {
    ok = ceremony_root(cat, o->out, &pass, 0, 0, &token.token, err);
    pki_secret_cleanup(&pass);
  }
  cli_token_cleanup(&token);
  return ok;
}

/* root_secret opens the root: from custodian shares, or its passphrase. */
static int root_secret(ceremony_root_key *out, const options *o, pki_err *err) {
  if (o->num_shares > 0) return ceremony_secret_from_shares(out, o->shares, o->num_shares, err);
  return ceremony_secret_from_passphrase(out, o->root_passphrase_file, ENV_ROOT_PASSPHRASE, err);
}

static int cmd_intermediate(const options *o, const pki_catalog *cat, pki_err *err) {
  ceremony_root_key root;
  pki_secret pass;
  cli_token token;
  if (!root_secret(&root, o, err)) return 0;
  int ok = cli_token_read(&token, o->pkcs11, o, err) && ca_passphrase(&pass, o, err) &&
           ceremony_intermediate(cat, o->out, &root, &pass, o->ca, &token.token, err);
  ceremony_root_key_cleanup(&root);
  pki_secret_cleanup(&pass);
  cli_token_cleanup(&token);
  return ok;
}

static int cmd_demo(const options *o, const pki_catalog *cat, pki_err *err) {
  pki_secret pass;
  char path[1100];
  const char *file = o->passphrase_file;
  if (file == NULL && getenv(ENV_CA_PASSPHRASE) == NULL) {
    snprintf(path, sizeof(path), "%s/ca-passphrase", o->out);
    file = path;
    if (!ceremony_make_passphrase_file(path, err)) return 0;
  }
  cli_token root_token, online_token;
  int ok = cli_token_read(&root_token, o->root_pkcs11, o, err) &&
           cli_token_read(&online_token, o->pkcs11, o, err) &&
           pki_secret_read(&pass, file, ENV_CA_PASSPHRASE, err) &&
           ceremony_demo(cat, o->out, &pass, &root_token.token, &online_token.token, err);
  pki_secret_cleanup(&pass);
  cli_token_cleanup(&root_token);
  cli_token_cleanup(&online_token);
  if (ok) {
    printf("Demo hierarchy written to %s:\n"
           "  root CA          %s/root-ca/certs/root-ca.crt (key split 3-of-5 in root-ca/shares)\n"
           "  intermediates    %s/intermediate-ca/<ca>/certs/\n"
           "  services         %s/service-certificates/\n"
           "  trust stores     %s/trust-stores/\n"
           "  root CRL         %s/crl/root.crl (renew with 'pkictl ceremony crl')\n",
           o->out, o->out, o->out, o->out, o->out, o->out);
  }
  return ok;
}

/* cmd_crl is `ceremony crl`: the root's next CRL, signed offline. */
static int cmd_crl(const options *o, const pki_catalog *cat, pki_err *err) {
  int reason = 0;
  if ((o->revoke == NULL) != (o->reason == NULL)) {
    PKI_ERR(err, PKI_ERR_INVALID, "--revoke CA and --reason R go together");
    return 0;
  }
  if (o->reason != NULL && !ceremony_crl_reason_parse(&reason, o->reason, err)) return 0;
  ceremony_root_key root;
  if (!root_secret(&root, o, err)) return 0;
  ceremony_crl_info info;
  int ok = ceremony_crl(cat, o->out, &root, o->revoke, reason, &info, err);
  ceremony_root_key_cleanup(&root);
  if (ok) {
    char until[64];
    time_t t = (time_t)info.next_update;
    struct tm tm;
    strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (o->revoke != NULL) printf("revoked %s (%s)\n", o->revoke, o->reason);
    printf("root CRL %llu written to %s/crl/root.crl and root.crl.pem: %zu revoked, next "
           "update %s\n",
           (unsigned long long)info.number, o->out, info.num_entries, until);
  }
  return ok;
}

/* cmd_issue is `issue --offline`: main sends the online form to
 * cmd_issue_online. */
static int cmd_issue(const options *o, const pki_catalog *cat, pki_err *err) {
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
  pki_secret pass;
  int ok = ca_passphrase(&pass, o, err) &&
           ceremony_issue_offline(cat, o->out, &pass, o->service, usage, o->csr, err);
  pki_secret_cleanup(&pass);
  return ok;
}

static int cmd_token_create(const options *o, const pki_catalog *cat, pki_err *err) {
  if (o->service == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "--service must name a catalogue service");
    return 0;
  }
  uint32_t ttl = 3600;
  if (o->ttl != NULL && !pki_duration_parse(&ttl, o->ttl, err)) return 0;
  char token[PKI_TOKEN_MAX_TEXT];
  if (!ceremony_token(cat, o->out, o->service, ttl, token, err)) return 0;
  printf("%s\n", token);
  return 1;
}

typedef int (*command_fn)(const options *o, const pki_catalog *cat, pki_err *err);

static int run(command_fn fn, int argc, char **argv) {
  options o;
  int rc = parse_options(&o, argc, argv, OUT_REQUIRED);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = load_catalog(&o, &err);
  if (cat == NULL) return fail(&err);
  int ok = fn(&o, cat, &err);
  pki_catalog_free(cat);
  return ok ? 0 : fail(&err);
}

/* Online commands: libpkiclient calls to pkid. Their errors carry a gRPC
 * status, printed by name: "pkictl: UNAVAILABLE: ...". */

/* g_hint, when set by a command, is printed after its error: what the
 * user can do about it, beyond the library's words. */
static char g_hint[1400];

static int fail_client(const pkc_error *err) {
  if (!err->local && err->attempts > 1) {
    fprintf(stderr, "pkictl: %s: %s (after %u attempts)\n", pkc_status_name(err->status),
            err->message, err->attempts);
  } else {
    fprintf(stderr, "pkictl: %s: %s\n", pkc_status_name(err->status), err->message);
  }
  return 1;
}

/* local_error fills |err| with a problem found here, before any call. */
static int local_error(pkc_error *err, int status, const char *fmt, const char *arg) {
  memset(err, 0, sizeof(*err));
  err->status = status;
  err->local = 1;
  snprintf(err->message, sizeof(err->message), fmt, arg);
  return 0;
}

static int from_pki_err(pkc_error *out, const pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->status = PKC_STATUS_INVALID_ARGUMENT;
  out->local = 1;
  snprintf(out->message, sizeof(out->message), "%s", err->msg);
  return 0;
}

/* Files named by --pki/--as, resolved from the demo tree. */
typedef struct tree_files {
  char root[PKI_PATH_MAX];
  char cert[PKI_PATH_MAX];
  char chain[PKI_PATH_MAX];
  char key[PKI_PATH_MAX];
  char server_ca[PKI_PATH_MAX]; /* the tree's copy of pkid's CA certificate */
  int have_root, have_service, have_server_ca;
} tree_files;

/* resolve_tree finds --pki DIR's root and --as SERVICE[:server|client]'s
 * certificate files (client usage unless said). */
static int resolve_tree(tree_files *t, const options *o, const pki_catalog *cat,
                        pki_err *err) {
  memset(t, 0, sizeof(*t));
  if (o->as != NULL && o->pki == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "--as SERVICE needs --pki DIR");
    return 0;
  }
  if (o->pki == NULL) return 1;
  if (!pki_tree_ca_path(t->root, sizeof(t->root), o->pki, pki_catalog_root(cat),
                        PKI_TREE_CA_CERT, err)) {
    return 0;
  }
  t->have_root = 1;
  /* pkid's CA, when the tree holds its certificate: pkid is then checked by
   * that CA's key, not only its name. */
  const pki_catalog_service *self = pki_catalog_find_service(cat, PKC_PKID_SERVICE);
  const pki_catalog_ca *self_ca = self != NULL ? pki_catalog_find_ca(cat, self->ca) : NULL;
  pki_err path_err;
  if (self_ca != NULL &&
      pki_tree_ca_path(t->server_ca, sizeof(t->server_ca), o->pki, self_ca, PKI_TREE_CA_CERT,
                       &path_err) &&
      pki_file_exists(t->server_ca)) {
    t->have_server_ca = 1;
  }
  if (o->as == NULL) return 1;
  char name[256];
  snprintf(name, sizeof(name), "%s", o->as);
  pki_usage usage = PKI_USAGE_CLIENT;
  char *colon = strchr(name, ':');
  if (colon != NULL) {
    *colon = '\0';
    if (strcmp(colon + 1, "server") == 0) {
      usage = PKI_USAGE_SERVER;
    } else if (strcmp(colon + 1, "client") != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "--as SERVICE[:server|client], not '%s'", o->as);
      return 0;
    }
  }
  const pki_catalog_service *svc = pki_catalog_find_service(cat, name);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", name);
    return 0;
  }
  const pki_catalog_cert *cert = NULL;
  for (size_t i = 0; i < svc->num_certs && cert == NULL; i++) {
    if (svc->certs[i].usage == usage) cert = &svc->certs[i];
  }
  if (cert == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "service '%s' has no %s certificate", name,
            usage == PKI_USAGE_SERVER ? "server" : "client");
    return 0;
  }
  if (!pki_tree_service_path(t->cert, sizeof(t->cert), o->pki, svc, cert, ".crt", err) ||
      !pki_tree_service_path(t->key, sizeof(t->key), o->pki, svc, cert, ".key", err) ||
      !pki_tree_service_path(t->chain, sizeof(t->chain), o->pki, svc, cert, "-chain.crt",
                             err)) {
    return 0;
  }
  t->have_service = 1;
  return 1;
}

/* client_options fills the connection from the options (explicit files
 * first, then --pki/--as). |anonymous|: no client certificate (bootstrap).
 * Strings may point into |cat| and |t|, which must outlive pkc_client_new. */
static int client_options(pkc_options *po, const options *o, const tree_files *t,
                          const pki_catalog *cat, int anonymous, pki_err *err) {
  memset(po, 0, sizeof(*po));
  po->target = o->server != NULL ? o->server : DEFAULT_SERVER;
  po->server_name_override = o->server_name != NULL ? o->server_name : DEFAULT_SERVER_NAME;
  po->root_pem_file = o->root != NULL ? o->root : (t->have_root ? t->root : NULL);
  if (po->root_pem_file == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "--root FILE (or --pki DIR) is required");
    return 0;
  }
  /* Who pkid is: the catalogue's pki-ca service, from its CA. */
  const pki_catalog_service *self = pki_catalog_find_service(cat, PKC_PKID_SERVICE);
  const pki_catalog_ca *self_ca = self != NULL ? pki_catalog_find_ca(cat, self->ca) : NULL;
  po->server_identity = o->server_identity != NULL ? o->server_identity
                        : self != NULL             ? self->identity
                                                   : NULL;
  if (o->server_ca != NULL) {
    po->server_ca_pem_file = o->server_ca;
  } else if (t->have_server_ca) {
    po->server_ca_pem_file = t->server_ca;
  } else if (self_ca != NULL) {
    po->server_ca_common_name = self_ca->common_name;
  }
  if (po->server_identity == NULL ||
      (po->server_ca_pem_file == NULL && po->server_ca_common_name == NULL)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "the catalogue has no %s service to tell who pkid is: give --server-identity URI "
            "and --server-ca FILE",
            PKC_PKID_SERVICE);
    return 0;
  }
  if (!anonymous) {
    if (o->cert != NULL || o->key != NULL) {
      if (o->cert == NULL || o->key == NULL) {
        PKI_ERR(err, PKI_ERR_INVALID, "--cert FILE and --key FILE go together");
        return 0;
      }
      po->cert_pem_file = o->cert;
      po->key_pem_file = o->key;
      po->chain_pem_file = o->chain;
    } else if (t->have_service) {
      po->cert_pem_file = t->cert;
      po->key_pem_file = t->key;
      po->chain_pem_file = o->chain != NULL ? o->chain : t->chain;
    } else {
      PKI_ERR(err, PKI_ERR_INVALID,
              "a client certificate is required: --cert FILE --key FILE, or --pki DIR "
              "--as SERVICE");
      return 0;
    }
  }
  if (o->timeout_ms != NULL) {
    char *end = NULL;
    unsigned long long ms = strtoull(o->timeout_ms, &end, 10);
    if (end == o->timeout_ms || *end != '\0' || ms == 0 || ms > 86400000ULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "--timeout-ms wants 1..86400000, not '%s'",
              o->timeout_ms);
      return 0;
    }
    po->deadline_us = (uint64_t)ms * 1000;
  }
  return 1;
}

static int parse_usage(pkc_usage *out, const char *text, pkc_error *err) {
  if (text == NULL) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--usage server|client is required%s",
                       "");
  }
  if (strcmp(text, "server") == 0) {
    *out = PKC_USAGE_SERVER;
  } else if (strcmp(text, "client") == 0) {
    *out = PKC_USAGE_CLIENT;
  } else {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--usage is server or client, not '%s'",
                       text);
  }
  return 1;
}

/* issue_params reads --key-type and --validity. */
static int issue_params(pkc_issue_params *p, const options *o, pkc_error *err) {
  memset(p, 0, sizeof(*p));
  p->key_type = PKC_KEY_ECDSA_P256;
  if (o->key_type != NULL && !pkc_key_type_parse(&p->key_type, o->key_type, err)) return 0;
  if (o->validity != NULL) {
    pki_err perr;
    pki_err_clear(&perr);
    if (!pki_duration_parse(&p->validity_seconds, o->validity, &perr)) {
      return from_pki_err(err, &perr);
    }
  }
  return 1;
}

static int need_out_files(const options *o, pkc_error *err) {
  if (o->out_cert == NULL || o->out_key == NULL) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                       "--out-cert FILE and --out-key FILE are required%s", "");
  }
  return 1;
}

static void format_time(char *out, size_t out_size, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
    snprintf(out, out_size, "-");
    return;
  }
  strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* write_issued writes the files and says what was issued. */
static int write_issued(const pkc_issued *issued, const options *o, pkc_error *err) {
  if (!pkc_issued_write(issued, o->out_key, o->out_cert, o->out_chain, err)) return 0;
  char until[64];
  format_time(until, sizeof(until), issued->not_after);
  printf("serial:    %s\n"
         "not after: %s\n"
         "cert:      %s\n"
         "key:       %s\n",
         issued->serial, until, o->out_cert, o->out_key);
  if (o->out_chain != NULL) printf("chain:     %s\n", o->out_chain);
  return 1;
}

typedef int (*online_fn)(const options *o, pkc_client *client, pkc_error *err);

/* issue_or_bootstrap: Issue, with a token (bootstrap) or the client's
 * certificate. */
static int issue_or_bootstrap(const options *o, pkc_client *client, int bootstrap,
                              pkc_error *err) {
  pkc_issue_params p;
  if (!need_out_files(o, err) || !issue_params(&p, o, err) ||
      !parse_usage(&p.usage, o->usage, err)) {
    return 0;
  }
  if (bootstrap) {
    if (o->token == NULL || o->service == NULL) {
      return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                         "--token TOKEN and --service NAME are required%s", "");
    }
    p.bootstrap_token = o->token;
  } else if (o->token != NULL) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                       "--token belongs to 'pkictl bootstrap'%s", "");
  }
  p.service = o->service;
  pkc_issued issued;
  memset(&issued, 0, sizeof(issued));
  int ok = pkc_issue(client, &p, &issued, err) && write_issued(&issued, o, err);
  pkc_issued_cleanup(&issued);
  return ok;
}

static int cmd_bootstrap(const options *o, pkc_client *client, pkc_error *err) {
  return issue_or_bootstrap(o, client, 1, err);
}

static int cmd_issue_online(const options *o, pkc_client *client, pkc_error *err) {
  return issue_or_bootstrap(o, client, 0, err);
}

static int cmd_renew(const options *o, pkc_client *client, pkc_error *err) {
  pkc_issue_params p;
  if (!need_out_files(o, err) || !issue_params(&p, o, err)) return 0;
  if (o->service != NULL || o->usage != NULL) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                       "renew keeps the certificate's service and usage; drop "
                       "--service/--usage%s",
                       "");
  }
  pkc_issued issued;
  memset(&issued, 0, sizeof(issued));
  int ok = pkc_renew(client, &p, &issued, err) && write_issued(&issued, o, err);
  pkc_issued_cleanup(&issued);
  return ok;
}

/* The CRLReason names of RFC 5280 5.3.1, in pkictl's spelling; all but
 * removeFromCRL, which only delta CRLs use. */
static const struct {
  const char *name;
  pkc_revocation_reason reason;
} kReasons[] = {
    {"unspecified", PKC_REVOKE_UNSPECIFIED},
    {"key-compromise", PKC_REVOKE_KEY_COMPROMISE},
    {"ca-compromise", PKC_REVOKE_CA_COMPROMISE},
    {"affiliation-changed", PKC_REVOKE_AFFILIATION_CHANGED},
    {"superseded", PKC_REVOKE_SUPERSEDED},
    {"cessation-of-operation", PKC_REVOKE_CESSATION_OF_OPERATION},
    {"certificate-hold", PKC_REVOKE_CERTIFICATE_HOLD},
    {"privilege-withdrawn", PKC_REVOKE_PRIVILEGE_WITHDRAWN},
    {"aa-compromise", PKC_REVOKE_AA_COMPROMISE},
};

static const char *reason_name(pkc_revocation_reason r) {
  for (size_t i = 0; i < sizeof(kReasons) / sizeof(kReasons[0]); i++) {
    if (kReasons[i].reason == r) return kReasons[i].name;
  }
  return r == PKC_REVOKE_REMOVE_FROM_CRL ? "remove-from-crl" : "unknown";
}

/* parse_time_arg reads an RFC 3339 UTC time ("2026-11-30T12:00:00Z",
 * RFC 3339 5.6 with the "Z" offset and no fraction) or Unix seconds. */
static int parse_time_arg(int64_t *out, const char *text) {
  size_t len = strlen(text), digits = strspn(text, "0123456789");
  if (len > 0 && digits == len) {
    if (len > 12) return 0;
    *out = (int64_t)strtoll(text, NULL, 10);
    return 1;
  }
  static const char kShape[] = "dddd-dd-ddTdd:dd:ddZ";
  for (size_t i = 0; i < len && len == 20; i++) {
    if (kShape[i] == 'd' && (text[i] < '0' || text[i] > '9')) return 0;
  }
  int y, mo, d, h, mi, sec, n = 0;
  if (len != 20 || sscanf(text, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%*1[Zz]%n", &y, &mo, &d, &h, &mi,
                          &sec, &n) != 6 ||
      n != 20 || text[4] != '-' || text[7] != '-' || text[13] != ':' || text[16] != ':') {
    return 0;
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  /* timegm normalizes 02-30 into March: a date that moved was not one. */
  struct tm back;
  if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != tm.tm_year ||
      back.tm_mon != mo - 1 || back.tm_mday != d || back.tm_hour != h || back.tm_min != mi ||
      back.tm_sec != sec || y < 1970) {
    return 0;
  }
  *out = (int64_t)t;
  return 1;
}

/* serial_arg copies --serial, lower-cased, without a "0x" prefix. */
static int serial_arg(char *out, size_t out_size, const options *o, pkc_error *err) {
  if (o->serial == NULL || o->serial[0] == '\0') {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--serial HEX is required%s", "");
  }
  const char *s = o->serial;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  size_t n = strlen(s);
  if (n == 0 || n >= out_size) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--serial '%s' is not a serial",
                       o->serial);
  }
  for (size_t i = 0; i <= n; i++) {
    char c = s[i];
    out[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
  }
  return 1;
}

static int cmd_revoke(const options *o, pkc_client *client, pkc_error *err) {
  char serial[128];
  if (!serial_arg(serial, sizeof(serial), o, err)) return 0;
  pkc_revoke_params p = {.serial = serial, .reason = PKC_REVOKE_UNSPECIFIED};
  if (o->reason != NULL) {
    size_t i = 0, n = sizeof(kReasons) / sizeof(kReasons[0]);
    while (i < n && strcmp(kReasons[i].name, o->reason) != 0) i++;
    if (i == n) {
      return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                         "--reason is key-compromise, ca-compromise, affiliation-changed, "
                         "superseded, cessation-of-operation, certificate-hold, "
                         "privilege-withdrawn, aa-compromise or unspecified, not '%s'",
                         o->reason);
    }
    p.reason = kReasons[i].reason;
  }
  if (o->invalidity_date != NULL && !parse_time_arg(&p.invalidity_date, o->invalidity_date)) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                       "--invalidity-date wants a UTC time like 2026-11-30T12:00:00Z or Unix "
                       "seconds, not '%s'",
                       o->invalidity_date);
  }
  if (o->same_key && p.reason != PKC_REVOKE_KEY_COMPROMISE) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT,
                       "--same-key goes with --reason key-compromise only%s", "");
  }
  p.same_key = o->same_key;
  pkc_revoked r;
  if (!pkc_revoke_ex(client, &p, &r, err)) return 0;
  char when[64], invalid[64];
  format_time(when, sizeof(when), r.revoked_at);
  format_time(invalid, sizeof(invalid), p.invalidity_date);
  for (size_t i = 0; i < r.num_serials; i++) {
    printf("revoked %s at %s (%s)\n", r.serials[i], when, reason_name(p.reason));
  }
  if (p.invalidity_date != 0) printf("invalidity date: %s\n", invalid);
  if (p.same_key) printf("%zu certificate(s) of the same key revoked\n", r.num_serials);
  pkc_revoked_cleanup(&r);
  return 1;
}

static const char *state_name(pkc_cert_state s) {
  switch (s) {
    case PKC_CERT_GOOD: return "GOOD";
    case PKC_CERT_REVOKED: return "REVOKED";
    case PKC_CERT_EXPIRED: return "EXPIRED";
    default: return "UNSPECIFIED";
  }
}

static const char *or_dash(const char *s) { return s[0] != '\0' ? s : "-"; }

static int cmd_status(const options *o, pkc_client *client, pkc_error *err) {
  char serial[128];
  if (!serial_arg(serial, sizeof(serial), o, err)) return 0;
  pkc_cert_status st;
  memset(&st, 0, sizeof(st));
  if (!pkc_status(client, serial, &st, err)) return 0;
  char from[64], until[64];
  format_time(from, sizeof(from), st.not_before);
  format_time(until, sizeof(until), st.not_after);
  printf("serial:     %s\n"
         "state:      %s\n"
         "service:    %s\n"
         "identity:   %s\n"
         "usage:      %s\n"
         "issuer:     %s\n"
         "not before: %s\n"
         "not after:  %s\n",
         st.serial[0] != '\0' ? st.serial : serial, state_name(st.state), or_dash(st.service),
         or_dash(st.identity),
         st.usage == PKC_USAGE_SERVER ? "server" : st.usage == PKC_USAGE_CLIENT ? "client" : "-",
         or_dash(st.issuer), from, until);
  if (st.state == PKC_CERT_REVOKED || st.revoked_at != 0) {
    char when[64];
    format_time(when, sizeof(when), st.revoked_at);
    printf("revoked at: %s\n"
           "reason:     %s\n",
           when, reason_name(st.revocation_reason));
    if (st.invalidity_date != 0) {
      char invalid[64];
      format_time(invalid, sizeof(invalid), st.invalidity_date);
      printf("invalid since: %s\n", invalid);
    }
  }
  return 1;
}

static int cmd_bundle(const options *o, pkc_client *client, pkc_error *err) {
  if (o->out == NULL) {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--out FILE is required%s", "");
  }
  pkc_trust_bundle bundle;
  memset(&bundle, 0, sizeof(bundle));
  if (!pkc_trust_bundle_get(client, o->ca, &bundle, err)) return 0;
  int ok = pkc_trust_bundle_write_ex(&bundle, o->ca, o->out,
                                     o->accept_new_root ? PKC_BUNDLE_ACCEPT_NEW_ROOT : 0, err);
  if (!ok && !bundle.root_trusted && !o->accept_new_root &&
      err->status == PKC_STATUS_FAILED_PRECONDITION) {
    /* The library's words, then what to do about them here. */
    snprintf(g_hint, sizeof(g_hint),
             "pkictl: the root trusted here is %s. Nothing was written. If the root is being "
             "replaced on purpose, run again with --accept-new-root.\n",
             o->trusted_root);
  } else if (ok && !bundle.root_trusted) {
    fprintf(stderr,
            "pkictl: warning: the bundle's root is not the root trusted here (%s); "
            "installed because --accept-new-root was given\n",
            o->trusted_root);
  }
  pkc_trust_bundle_cleanup(&bundle);
  if (ok) printf("%s written to %s\n", o->ca != NULL ? o->ca : "root", o->out);
  return ok;
}

/* cmd_acme_eab_create prints two lines, the kid and the key, for an
 * operator to hand to the ACME client's configuration, and nothing else on
 * stdout, so that a script can read them. */
static int cmd_acme_eab_create(const options *o, pkc_client *client, pkc_error *err) {
  if (o->service == NULL || o->service[0] == '\0') {
    return local_error(err, PKC_STATUS_INVALID_ARGUMENT, "--service NAME is required%s", "");
  }
  pkc_acme_eab eab;
  if (!pkc_create_acme_eab(client, o->service, &eab, err)) return 0;
  printf("kid: %s\nhmac-key: %s\n", eab.kid, eab.hmac_key);
  pkc_acme_eab_cleanup(&eab);
  /* A key lost on a full disk or a closed pipe was made for nothing: say
   * so, rather than exit 0 with the operator holding no key. */
  if (fflush(stdout) != 0) {
    return local_error(err, PKC_STATUS_INTERNAL, "the key could not be written to stdout%s",
                       "");
  }
  return 1;
}

/* run_online parses the options, connects (with a client certificate
 * unless |anonymous|) and runs |fn|. */
static int run_online(online_fn fn, int anonymous, int argc, char **argv) {
  options o;
  int rc = parse_options(&o, argc, argv, OUT_OPTIONAL);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = load_catalog(&o, &err);
  if (cat == NULL) return fail(&err);
  tree_files tree;
  pkc_options po;
  int ok = resolve_tree(&tree, &o, cat, &err) &&
           client_options(&po, &o, &tree, cat, anonymous, &err);
  if (!ok) {
    pki_catalog_free(cat);
    return fail(&err);
  }
  pkc_error perr;
  memset(&perr, 0, sizeof(perr));
  pkc_client *client = pkc_client_new(&po, &perr);
  pki_catalog_free(cat); /* po's strings are copied by now */
  if (client == NULL) return fail_client(&perr);
  o.trusted_root = po.root_pem_file;
  ok = fn(&o, client, &perr);
  pkc_client_free(client);
  if (ok) return 0;
  fail_client(&perr);
  fputs(g_hint, stderr);
  return 1;
}

/* has_offline reports whether --offline is among the arguments. */
static int has_offline(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--offline") == 0) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "ceremony") == 0) {
    if (argc < 3) return usage_error("ceremony needs root, intermediate, demo or crl%s", "");
    const char *step = argv[2];
    if (strcmp(step, "root") == 0) return run(cmd_root, argc - 2, argv + 2);
    if (strcmp(step, "intermediate") == 0) return run(cmd_intermediate, argc - 2, argv + 2);
    if (strcmp(step, "demo") == 0) return run(cmd_demo, argc - 2, argv + 2);
    if (strcmp(step, "crl") == 0) return run(cmd_crl, argc - 2, argv + 2);
    return usage_error("unknown ceremony '%s'", step);
  }
  if (strcmp(cmd, "issue") == 0) {
    if (has_offline(argc - 1, argv + 1)) return run(cmd_issue, argc - 1, argv + 1);
    return run_online(cmd_issue_online, 0, argc - 1, argv + 1);
  }
  if (strcmp(cmd, "bootstrap") == 0) return run_online(cmd_bootstrap, 1, argc - 1, argv + 1);
  if (strcmp(cmd, "renew") == 0) return run_online(cmd_renew, 0, argc - 1, argv + 1);
  if (strcmp(cmd, "revoke") == 0) return run_online(cmd_revoke, 0, argc - 1, argv + 1);
  if (strcmp(cmd, "status") == 0) return run_online(cmd_status, 0, argc - 1, argv + 1);
  if (strcmp(cmd, "bundle") == 0) return run_online(cmd_bundle, 0, argc - 1, argv + 1);
  if (strcmp(cmd, "acme") == 0) {
    if (argc < 4 || strcmp(argv[2], "eab") != 0 || strcmp(argv[3], "create") != 0) {
      return usage_error("acme takes: eab create --service NAME%s", "");
    }
    return run_online(cmd_acme_eab_create, 0, argc - 3, argv + 3);
  }
  if (strcmp(cmd, "agent") == 0) return agent_main(argc - 1, argv + 1);
  if (strcmp(cmd, "lb") == 0) return lb_cmd_main(argc - 1, argv + 1);
  if (strcmp(cmd, "crl") == 0) return crl_cmd_main(argc - 1, argv + 1);
  if (strcmp(cmd, "fleet") == 0) return fleet_cmd_main(argc - 1, argv + 1);
  if (strcmp(cmd, "inventory") == 0) return inventory_cmd_main(argc - 1, argv + 1);
  if (strcmp(cmd, "audit") == 0) return audit_cmd_main(argc - 1, argv + 1);
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
    static const char kJournalUsage[] =
        "journal takes: verify DIR [--checkpoint FILE (--audit-key PUB | --pki DIR)]%s";
    if (argc < 4 || strcmp(argv[2], "verify") != 0) return usage_error(kJournalUsage, "");
    const char *checkpoint = NULL, *pub = NULL, *pki = NULL;
    for (int i = 4; i < argc; i += 2) {
      if (i + 1 >= argc) return usage_error(kJournalUsage, "");
      if (strcmp(argv[i], "--checkpoint") == 0) checkpoint = argv[i + 1];
      else if (strcmp(argv[i], "--audit-key") == 0) pub = argv[i + 1];
      else if (strcmp(argv[i], "--pki") == 0) pki = argv[i + 1];
      else return usage_error(kJournalUsage, "");
    }
    pki_err err;
    pki_err_clear(&err);
    char pub_path[PKI_PATH_MAX];
    if (checkpoint != NULL && pub == NULL) {
      /* The audit key's public half, from the tree the ceremony made. */
      if (pki == NULL) return usage_error(kJournalUsage, "");
      if (!pki_tree_audit_path(pub_path, sizeof(pub_path), pki, 1, &err)) return fail(&err);
      pub = pub_path;
    }
    return journal_cmd_verify(stdout, argv[3], checkpoint, pub, &err) ? 0 : fail(&err);
  }
  return usage_error("unknown command '%s'", cmd);
}
