/* notify.h: pkid's state, told to its service manager (sd_notify(3)).
 *
 * pkid.service (deploy/systemd) is Type=notify: systemd counts pkid as
 * started on READY=1, not when the process exists, so units ordered after
 * it find the listeners accepting and the journal open. Without
 * NOTIFY_SOCKET in the environment (pkid not started that way) every call
 * does nothing. A message that cannot be sent is logged and otherwise
 * ignored: pkid serves the same whether or not anyone hears it.
 *
 * |status| is one line for `systemctl status` (STATUS=); NULL sends none.
 * Loop thread only. */
#ifndef PKID_SERVER_NOTIFY_H
#define PKID_SERVER_NOTIFY_H

/* pkid_notify_ready: started, or done reloading (READY=1). */
void pkid_notify_ready(const char *status);

/* pkid_notify_reloading: a SIGHUP reload begins (RELOADING=1); ended by
 * pkid_notify_ready. */
void pkid_notify_reloading(void);

/* pkid_notify_stopping: draining has begun (STOPPING=1). */
void pkid_notify_stopping(const char *status);

/* pkid_notify_status: only the status line changes. */
void pkid_notify_status(const char *status);

#endif
