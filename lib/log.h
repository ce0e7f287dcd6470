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

/* A bound on lines that clients can cause (a refused handshake, a refused
 * request): past |per_second| lines in a second, they are counted instead
 * of written, and the next line written says how many were left out, so a
 * flood of bad requests cannot flood the log. One per call site; not
 * thread-safe (the loop thread's). */
typedef struct pki_log_limit {
  unsigned per_second;
  long second;
  unsigned written, suppressed;
} pki_log_limit;

/* pki_log_allow: 1 when the line may be written now. */
int pki_log_allow(pki_log_limit *limit);

/* pki_log_suppressed is how many lines were left out since the last one
 * written, as text for a "suppressed" key ("0" when none), and resets it. */
const char *pki_log_suppressed(pki_log_limit *limit);

#endif /* PKID_LIB_LOG_H */
