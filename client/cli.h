/* cli.h: what pkictl's commands share beyond lib/: reading a number
 * option, and the key type a catalogue service's certificates take when
 * pkictl makes their keys (the agent's renewals, the load balancer's next
 * certificate). */
#ifndef PKID_CLIENT_CLI_H
#define PKID_CLIENT_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "client/pkiclient.h"
#include "lib/catalog.h"

/* cli_parse_u64 reads a decimal number within [min, max], all of |text|. */
int cli_parse_u64(uint64_t *out, const char *text, uint64_t min, uint64_t max);

/* cli_key_type is the key type |svc|'s profile asks for, as libpkiclient
 * names it (RSA by its size; P-256 when the profile says nothing). */
pkc_key_type cli_key_type(const pki_catalog_service *svc);

/* cli_format_time writes Unix time |t| as 2026-12-01T12:00:00Z into |out|
 * ("-" when out of range), for log lines. */
void cli_format_time(char *out, size_t size, int64_t t);

/* cli_on_stop_signals makes SIGTERM and SIGINT call |fn| (a daemon's
 * "stop after this pass"). */
void cli_on_stop_signals(void (*fn)(int));

#endif /* PKID_CLIENT_CLI_H */
