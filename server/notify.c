/* notify.c: sd_notify(3) for pkid (see notify.h). */
#include "server/notify.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "lib/log.h"

/* send_state sends |state| plus STATUS=|status|. unset_environment is 0:
 * NOTIFY_SOCKET stays set for the messages that come later (reload,
 * stop). */
static void send_state(const char *state, const char *status) {
  if (state[0] == '\0' && status == NULL) return;
  char msg[512];
  snprintf(msg, sizeof(msg), "%s%s%s", state, status != NULL ? "STATUS=" : "",
           status != NULL ? status : "");
  int rc = sd_notify(0, msg);
  if (rc < 0) {
    char code[16];
    snprintf(code, sizeof(code), "%d", -rc);
    pki_log("warn", "notify_failed", "errno", code, "reason", strerror(-rc), NULL);
  }
}

void pkid_notify_ready(const char *status) { send_state("READY=1\n", status); }

void pkid_notify_reloading(void) {
  /* sd_notify(3) asks for MONOTONIC_USEC with RELOADING=1 (systemd 253
   * and later match it to the reload); older versions ignore it. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char state[64];
  snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
           (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
  send_state(state, "reloading");
}

void pkid_notify_stopping(const char *status) { send_state("STOPPING=1\n", status); }

void pkid_notify_status(const char *status) { send_state("", status); }
