/* log.h: structured logs, one JSON object per line on stderr.
 *
 *   pki_log("info", "issued", "serial", hex, "identity", id, NULL);
 *   {"ts":"2026-11-27T22:41:15.123Z","level":"info","event":"issued","serial":"01..","identity":"spiffe://.."}
 *
 * Values are strings, escaped as JSON. Never pass key material. */
#ifndef PKID_LIB_LOG_H
#define PKID_LIB_LOG_H

/* pki_log writes one line; the arguments after |event| are key, value
 * pairs ending with NULL. Safe from any thread (one write(2) per line). */
void pki_log(const char *level, const char *event, ...) __attribute__((sentinel));

#endif /* PKID_LIB_LOG_H */
