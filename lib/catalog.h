/* catalog.h: the service catalogue, one YAML file (deploy/catalog.yaml).
 *
 * The catalogue names the CA hierarchy (the offline root and the online
 * intermediates, with key type, validity, path length and optional name
 * constraints) and every service of the fleet: its issuing CA, identity (a
 * URI SAN), other names, key type, validity and rotation, the certificates
 * it holds (server, client) and its permissions. It drives both the
 * server's policy (who may obtain what) and the client's bootstrap (what to
 * ask for and where to write it).
 *
 * Loading validates everything it can without keys: names, durations, that
 * every CA a service or CA names exists, that the root is unique, that no
 * identity or file is used twice, that path lengths and name constraints
 * admit what the services need. A failure says file, line and what is
 * wrong ("deploy/catalog.yaml:42: service 'vault': unknown CA 'infra-ca'"). */
#ifndef PKID_LIB_CATALOG_H
#define PKID_LIB_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/key.h"
#include "lib/names.h"
#include "lib/usage.h"

typedef struct pki_catalog_ca {
  char *name;        /* "agents-ca"; the root is the one CA without parent */
  char *parent;      /* issuing CA's name, NULL for the root */
  char *common_name; /* subject CN, "Cybersec Framework Agents CA" */
  pki_key_type key_type;
  unsigned key_bits;
  uint32_t validity_days;
  int path_len; /* basicConstraints pathLenConstraint; -1 when absent */
  pki_name *permitted; /* nameConstraints permittedSubtrees; may be empty */
  size_t num_permitted;
  pki_name *excluded; /* nameConstraints excludedSubtrees; may be empty */
  size_t num_excluded;
  /* Where relying parties fetch what this CA publishes, made from the
   * catalogue's bases; NULL when the base is not set. The certificates it
   * signs point at these (RFC 5280 4.2.1.13, 4.2.2.1). */
  char *crl_url;       /* <crl_url><name>.crl: its complete CRL, DER */
  char *delta_crl_url; /* <crl_url><name>-delta.crl: its delta CRL, DER */
  char *cert_url;      /* <ca_issuers_url><name>.crt: its certificate, DER */
  /* The root only: how long the root's CRL is valid (nextUpdate after
   * thisUpdate), default PKI_CATALOG_ROOT_CRL_VALIDITY_DAYS. The root's
   * key is offline, so that CRL is signed in a ceremony (pkictl ceremony
   * crl) and must be signed again before it runs out. 0 for the other CAs,
   * whose CRLs pkid makes. */
  uint32_t crl_validity_days;
  int line; /* where it is defined, for messages */
} pki_catalog_ca;

/* One certificate a service holds. Its key and chain files sit beside it:
 * "x.crt" has "x.key" (PKCS#8, 0600) and "x-chain.crt" (the intermediates). */
typedef struct pki_catalog_cert {
  pki_usage usage;
  char *file; /* path under the service's directory, "active/lb-current.crt" */
} pki_catalog_cert;

/* A year: the CA/Browser Forum's Baseline Requirements (7.2.2) allow a
 * CRL of CA certificates at most twelve months, and a ceremony twice a
 * year (pkid alerts at half of it) is what an offline root can bear. */
#define PKI_CATALOG_ROOT_CRL_VALIDITY_DAYS 365

#define PKI_CATALOG_MAX_CERTS 4
#define PKI_CATALOG_MAX_KEYS 6

/* Permissions pkid acts on. Others in the file are refused as unknown. */
#define PKI_PERM_ADMIN 0x1u /* may issue, renew and revoke for others */
#define PKI_PERM_VAULT_ACCESS 0x2u
#define PKI_PERM_DATABASE_AUDIT 0x4u
#define PKI_PERM_PRIVILEGED_ACCESS 0x8u
/* may read the journal's audit trail (pki.v1.Pki/StreamAudit) */
#define PKI_PERM_AUDIT 0x10u

typedef struct pki_catalog_service {
  char *name;     /* "pki-agent"; also the subject CN */
  char *ca;       /* issuing CA's name */
  char *identity; /* URI SAN, "spiffe://cybersec-framework.local/agents/pki-agent" */
  char *dir;      /* directory under service-certificates/, "agents/pki-agent" */
  pki_name *names; /* DNS, IP and email SANs; the identity is added on top */
  size_t num_names;
  /* The key types its CSRs may carry: "key: T" or "key: [T1, T2, ...]";
   * the first is the one clients make by default. */
  pki_key_type key_type;
  unsigned key_bits;
  pki_key_type key_types[PKI_CATALOG_MAX_KEYS];
  unsigned key_bits_list[PKI_CATALOG_MAX_KEYS];
  size_t num_key_types;
  uint32_t validity_s;     /* certificate lifetime */
  uint32_t rotation_s;     /* renew when this old; 0 when not set */
  uint32_t renew_before_s; /* renew when this much life is left; 0 when not set */
  pki_catalog_cert certs[PKI_CATALOG_MAX_CERTS];
  size_t num_certs;
  uint32_t permissions; /* PKI_PERM_* */
  int line;
} pki_catalog_service;

typedef struct pki_catalog {
  char *source;       /* file name used in messages */
  char *trust_domain; /* "cybersec-framework.local" */
  char *organization; /* subject O of every certificate */
  char *ocsp_url;     /* put in leaves' AIA; "http://host:port/" */
  /* Optional bases, each ending in "/", to which a CA's name is appended
   * (see pki_catalog_ca); NULL when not set, and then certificates carry
   * no cRLDistributionPoints or caIssuers. */
  char *crl_url;        /* "http://host:port/crl/" */
  char *ca_issuers_url; /* "http://host:port/ca/" */
  pki_catalog_ca *cas; /* root first, each CA after its parent */
  size_t num_cas;
  pki_catalog_service *services;
  size_t num_services;
} pki_catalog;

/* pki_catalog_load_file reads and validates a catalogue file. */
pki_catalog *pki_catalog_load_file(const char *path, pki_err *err);

/* pki_catalog_load_mem does the same from memory; |source| names it in
 * messages. */
pki_catalog *pki_catalog_load_mem(const char *source, const char *yaml,
                                  size_t yaml_len, pki_err *err);

/* pki_catalog_default returns the catalogue built into the binaries (a copy
 * of deploy/catalog.yaml), loaded and validated. */
pki_catalog *pki_catalog_default(pki_err *err);

void pki_catalog_free(pki_catalog *cat);

/* Look-ups return NULL when nothing matches. */
const pki_catalog_ca *pki_catalog_root(const pki_catalog *cat);
const pki_catalog_ca *pki_catalog_find_ca(const pki_catalog *cat, const char *name);
const pki_catalog_service *pki_catalog_find_service(const pki_catalog *cat,
                                                    const char *name);
const pki_catalog_service *pki_catalog_find_identity(const pki_catalog *cat,
                                                     const char *identity);

/* pki_catalog_service_accepts_key reports whether |svc|'s certificates may
 * hold a key of |type| and |bits| (the catalogue's key policy). */
int pki_catalog_service_accepts_key(const pki_catalog_service *svc, pki_key_type type,
                                    unsigned bits);

/* pki_duration_parse parses "45d", "24h", "90m" or "3600s" into seconds. */
int pki_duration_parse(uint32_t *out_s, const char *text, pki_err *err);

#endif /* PKID_LIB_CATALOG_H */
