/* agent.h: `pkictl agent`, a daemon that keeps a service's certificates
 * fresh.
 *
 * It watches the catalogue certificates of one service in a pki/ tree
 * (service-certificates/<dir>/<file>.crt with its .key and -chain.crt) and
 * renews each when it is due:
 *   - at the catalogue's renew_before (this much life left), if set;
 *   - else at its rotation age, if set;
 *   - else at 2/3 of its lifetime;
 * moved by a random jitter (default +-10% of the lifetime, never past
 * expiry) so that a fleet does not renew at once. The lifetime counts from
 * issuance: notBefore plus the PKI_BACKDATE_S pkid back-dates it by.
 *
 * A valid certificate renews itself (pkc_renew, authenticated with it). One
 * that is missing or expired is issued afresh (pkc_issue) with another
 * valid certificate of the same service; without one the agent logs the
 * error and keeps trying (bootstrap is `pkictl bootstrap`'s job).
 *
 * Files: the new key (0600), chain and certificate are written in full
 * beside the old ones, then renamed over them key first, certificate last,
 * back to back. A reader should stat both files before and after reading
 * them and read again if either changed.
 *
 * After a pass that renewed something the reload hook runs: a signal to a
 * pid, or `/bin/sh -c CMD` (waited for at most 30 s, then killed).
 *
 * While pkid is unreachable (or any call fails) the certificate is tried
 * again after an exponential backoff with +-20% jitter, bounded by
 * --max-backoff-ms; the agent never gives up. Every attempt is a JSON line
 * on stderr (server/log.h).
 *
 * Who pkid is: as pkictl, the catalogue's pki-ca identity (or
 * --server-identity), issued by pki-ca's CA, checked by key against the
 * tree's copy of that CA's certificate (or --server-ca; by name when the
 * tree has none). A server that fails is refused before anything is sent
 * (pkc_error.server_refused): logged at level error with
 * "server_refused":"true", and tried again only after --max-backoff-ms,
 * never at the quick pace of an outage.
 *
 * Metrics, Prometheus text format, written atomically to --metrics-file
 * (node_exporter's textfile collector reads it), served at GET /metrics on
 * --metrics-listen HOST:PORT (client/metrics_http.h), or both, the same
 * page in each:
 *   cert_expiry_timestamp{cert_name="redis-client.crt"} 1.7e9 (seconds)
 *   pkid_agent_renew_at_timestamp_seconds{cert_name="..."} (when it is due)
 *   pkid_agent_renewals_total{cert_name="...",result="ok|error"} N
 * cert_name is the catalogue's file name under the service's directory.
 * The port bound (port 0: the kernel's choice) is agent_start's
 * metrics_port.
 *
 * SIGTERM and SIGINT stop the loop between attempts; --once renews what is
 * due (each attempt with libpkiclient's own short retries) and exits, 1 if
 * any renewal failed. */
#ifndef PKID_CLIENT_AGENT_H
#define PKID_CLIENT_AGENT_H

#include <stdint.h>

#include "lib/catalog.h"

/* agent_main runs `pkictl agent`; argv[0] is "agent". It returns the exit
 * status: 0, 1 on failure, 2 on a usage error. */
int agent_main(int argc, char **argv);

/* agent_renew_at says when a certificate valid from |not_before| to
 * |not_after| is due under |svc|'s policy, before jitter; |*out_life| gets
 * the lifetime it counted from. */
int64_t agent_renew_at(const pki_catalog_service *svc, int64_t not_before, int64_t not_after,
                       int64_t *out_life);

#endif /* PKID_CLIENT_AGENT_H */
