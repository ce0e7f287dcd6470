/* config.h: pkid's configuration file.
 *
 * A YAML mapping whose keys are the long flags without dashes, dashes as
 * underscores, limits grouped:
 *
 *   pki: /var/lib/pkid/pki
 *   journal: /var/lib/pkid/journal
 *   listen: 127.0.0.1:8443
 *   ocsp_listen: 127.0.0.1:8081
 *   admin_listen: 127.0.0.1:9090
 *   acme_listen: 0.0.0.0:8555      # the ACME server (test mode is flags only)
 *   passphrase_file: /etc/pkid/ca-passphrase
 *   catalog: /etc/pkid/catalog.yaml
 *   postgres: "host=db.internal dbname=pkid user=pkid sslmode=verify-full ..."
 *   node: 1
 *   workers: 2
 *   limits: {max_conns: 4096, max_conns_per_address: 64, max_streams: 256,
 *            idle_timeout_ms: 300000, handshake_timeout_ms: 5000,
 *            max_call_ms: 30000, max_stream_ms: 600000,
 *            max_connection_age_ms: 3600000, identity_max_in_flight: 1024,
 *            identity_rate: 2000, refusal_window_s: 10}
 *   crl: {interval_s: 3600, delta_interval_s: 300, validity_s: 86400,
 *         batch_ms: 1000}
 *   siem:                          # the SIEM feed (server/audit/siem.h)
 *     collector: 192.0.2.10:6514   # --siem
 *     ca: /etc/pkid/siem/ca.crt    # --siem-ca
 *     name: siem.example.net       # --siem-name (default: the collector's host)
 *     cert: /etc/pkid/siem/siem-feed.crt   # --siem-cert, with its chain
 *     key: /etc/pkid/siem/siem-feed.key    # --siem-key
 *     hostname: ca-1               # --siem-hostname (default: gethostname)
 *
 * Every key is optional; flags given on the command line win over the file.
 * Unknown keys and values of the wrong kind are errors with file and line. */
#ifndef PKID_SERVER_CONFIG_H
#define PKID_SERVER_CONFIG_H

#include "lib/err.h"

typedef struct pkid_config {
  char *pki, *journal, *listen, *ocsp_listen, *admin_listen, *passphrase_file, *catalog;
  char *postgres;
  char *acme_listen;
  unsigned long node, workers; /* 0: not set */
  unsigned long max_conns, max_streams, idle_timeout_ms, handshake_timeout_ms;
  unsigned long max_conns_per_address, max_call_ms, max_stream_ms, max_connection_age_ms;
  unsigned long identity_max_in_flight, identity_rate, journal_segment_bytes;
  unsigned long crl_interval_s, crl_delta_interval_s, crl_validity_s, crl_batch_ms;
  unsigned long checkpoint_interval_s, checkpoint_records;
  unsigned long refusal_window_s;
  char *siem, *siem_ca, *siem_name, *siem_cert, *siem_key, *siem_hostname;
} pkid_config;

/* pkid_config_load reads |path| into |out| (zeroed first). */
int pkid_config_load(pkid_config *out, const char *path, pki_err *err);

void pkid_config_cleanup(pkid_config *cfg);

#endif /* PKID_SERVER_CONFIG_H */
