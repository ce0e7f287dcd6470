#include "server/pipeline/import.h"

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "lib/cert_info.h"
#include "lib/log.h"
#include "lib/pki_tree.h"
#include "server/pipeline/job.h"

/* One certificate on its way in. */
typedef struct import_job {
  pkid_job job;
  pkid_import *imp;
  struct import_job *next;
} import_job;

struct pkid_import {
  char dir[PKI_PATH_MAX];
  const pkid_cas *cas;
  const pki_catalog *cat;
  pkid_store *store;
  pkid_workers *workers;
  /* Made, not yet taken by the pool, oldest first: a revocation from the
   * fleet comes after the certificate it revokes. */
  import_job *waiting, *waiting_tail;
  size_t num_waiting, num_in_flight;
  void (*on_done)(void *ctx, uint64_t fleet_seq, const pki_err *failure);
  void *on_done_ctx;
  int stopped; /* the pool is stopping: nothing more is submitted */
};

static const char kWho[] = "offline-ceremony";

static void submit_waiting(pkid_import *imp);

static void on_imported(pkid_job *job) {
  import_job *ij = (import_job *)((char *)job - offsetof(import_job, job));
  pkid_import *imp = ij->imp;
  char hex[2 * PKI_SERIAL_MAX + 1];
  pki_serial_to_hex(hex, &job->rec.serial);
  const char *what = job->rec.type == PKI_REC_REVOKE ? "revocation" : "certificate";
  if (job->ok) {
    pkid_job_apply(job, imp->store);
    if (job->rec.type == PKI_REC_REVOKE) {
      char reason[8];
      snprintf(reason, sizeof(reason), "%u", job->rec.reason);
      pki_log("info", "revoked", "serial", hex, "reason", reason, "identity", job->identity,
              NULL);
    } else {
      pki_log("info", "imported", "serial", hex, "service", job->rec.service, "identity",
              job->identity, NULL);
    }
  } else {
    pki_log("error", "import_failed", "serial", hex, "what", what, "reason", job->err.msg,
            NULL);
  }
  uint64_t fleet_seq = job->fleet_seq;
  pki_err failure = job->err;
  int ok = job->ok;
  pkid_job_cleanup(job);
  free(ij);
  imp->num_in_flight--;
  submit_waiting(imp);
  if (imp->on_done != NULL) imp->on_done(imp->on_done_ctx, fleet_seq, ok ? NULL : &failure);
}

static void push_waiting(pkid_import *imp, import_job *ij) {
  ij->next = NULL;
  if (imp->waiting_tail != NULL) imp->waiting_tail->next = ij;
  else imp->waiting = ij;
  imp->waiting_tail = ij;
  imp->num_waiting++;
}

static void drop_first(pkid_import *imp) {
  import_job *ij = imp->waiting;
  imp->waiting = ij->next;
  if (imp->waiting == NULL) imp->waiting_tail = NULL;
  imp->num_waiting--;
}

/* ready_to_submit says whether the oldest waiting change goes now (1),
 * waits for those in flight (0), or is moot and dropped (-1): its
 * certificate is known already, or its revocation's certificate is not
 * known here (once nothing in flight could be it) or revoked already. */
static int ready_to_submit(pkid_import *imp, import_job *ij) {
  pkid_job *job = &ij->job;
  pkid_cert_record rec;
  int known =
      pkid_status_get(imp->store->status, job->rec.serial.bytes, job->rec.serial.len, &rec);
  if (job->rec.type == PKI_REC_ISSUE) return known ? -1 : 1;
  if (!known) {
    if (imp->num_in_flight > 0) return 0;
    char hex[2 * PKI_SERIAL_MAX + 1];
    pki_serial_to_hex(hex, &job->rec.serial);
    pki_log("warn", "import_refused", "serial", hex, "identity", job->identity, "reason",
            "a revocation of a certificate this node does not know", NULL);
    return -1;
  }
  if (rec.revoked) return -1;
  job->rec.ca = pkid_cas_at(imp->cas, rec.ca);
  return job->rec.ca != NULL ? 1 : -1;
}

static void submit_waiting(pkid_import *imp) {
  while (imp->waiting != NULL && !imp->stopped) {
    import_job *ij = imp->waiting;
    int go = ready_to_submit(imp, ij);
    if (go == 0) return; /* after those in flight */
    if (go < 0) {
      drop_first(imp);
      pkid_job_cleanup(&ij->job);
      free(ij);
      continue;
    }
    pki_err err;
    if (!pkid_workers_submit(imp->workers, &ij->job, &err)) return; /* room later */
    drop_first(imp);
    imp->num_in_flight++;
  }
}

/* issuer_of finds the loaded CA that names itself the issuer of |info|
 * (its name and key identifier). Whether that CA's key signed it, the
 * worker checks (pkid_issue_run, the job's verify_cert): a signature
 * check costs as much as a signature, and the loop thread, which would
 * hold every call meanwhile, is not the place for thousands a second from
 * the fleet. */
static const pkid_ca *issuer_of(const pkid_import *imp, const pki_cert_info *info) {
  for (size_t i = 0; i < imp->cas->num_cas; i++) {
    const pkid_ca *ca = &imp->cas->cas[i];
    if (info->has_aki && CBS_mem_equal(&info->aki, ca->issuer.ski, ca->issuer.ski_len) &&
        CBS_mem_equal(&info->issuer, ca->issuer.name, ca->issuer.name_len)) {
      return ca;
    }
  }
  return NULL;
}

/* make_job turns a certificate into an import job journaled as |who|'s,
 * or NULL (logged as from |path|) if it is not one pkid should import: not
 * ours, or known already; or, with |*oom| set, when out of memory. It
 * takes |der|. */
static import_job *make_job(pkid_import *imp, const char *path, uint8_t *der, size_t len,
                            const char *who, int *oom) {
  *oom = 0;
  pki_cert_info info;
  pki_err err;
  if (!pki_cert_info_parse(&info, der, len, &err)) {
    pki_log("warn", "import_refused", "file", path, "reason", err.msg, NULL);
    free(der);
    return NULL;
  }
  import_job *ij = NULL;
  const pkid_ca *ca = issuer_of(imp, &info);
  CBS serial = info.serial;
  if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1);
  pkid_cert_record known;
  if (ca == NULL) {
    pki_log("warn", "import_refused", "file", path, "reason",
            "not signed by any of the loaded CAs", NULL);
  } else if (CBS_len(&serial) == 0 || CBS_len(&serial) > PKI_SERIAL_MAX) {
    pki_log("warn", "import_refused", "file", path, "reason", "serial of unusual size", NULL);
  } else if (pkid_status_get(imp->store->status, CBS_data(&serial), CBS_len(&serial),
                             &known)) {
    /* Known already: nothing to do. */
  } else if ((ij = calloc(1, sizeof(*ij))) == NULL) {
    *oom = 1;
  } else {
    pkid_job *job = &ij->job;
    pkid_job_init(job, PKI_REC_ISSUE, on_imported);
    ij->imp = imp;
    pkid_job_set_identity(job, who);
    memcpy(job->rec.serial.bytes, CBS_data(&serial), CBS_len(&serial));
    job->rec.serial.len = CBS_len(&serial);
    job->rec.ca = ca;
    /* Its service is the catalogue's with its identity; a CA certificate
     * (load-balancer-ca) or a stranger's has none. */
    const char *identity = pki_cert_info_identity(&info);
    const pki_catalog_service *svc =
        identity != NULL ? pki_catalog_find_identity(imp->cat, identity) : NULL;
    job->rec.service = svc != NULL ? svc->name : "";
    job->rec.usage = 0; /* a CA certificate has no extended key usage */
    if (info.ext_key_usage & PKI_USAGE_SERVER) job->rec.usage = PKI_USAGE_SERVER;
    if (info.ext_key_usage & PKI_USAGE_CLIENT) job->rec.usage = PKI_USAGE_CLIENT;
    job->rec.not_before = info.not_before;
    job->rec.not_after = info.not_after;
    SHA256(CBS_data(&info.spki), CBS_len(&info.spki), job->rec.key_hash);
    /* Signed already: the worker checks the signature and signs only its
     * OCSP response. */
    job->cert = der;
    job->verify_cert = 1;
    job->rec.cert = der;
    job->rec.cert_len = len;
    job->now = (int64_t)time(NULL);
    der = NULL;
  }
  pki_cert_info_cleanup(&info);
  free(der);
  return ij;
}

int pkid_import_scan(pkid_import *imp, pki_err *err) {
  char folder[PKI_PATH_MAX];
  if (!pki_tree_issued_dir(folder, sizeof(folder), imp->dir, err)) return 0;
  DIR *d = opendir(folder);
  if (d == NULL) return 1; /* no ceremony left anything */
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n < 5 || strcmp(e->d_name + n - 4, ".crt") != 0) continue;
    char path[PKI_PATH_MAX + 256];
    uint8_t *der;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s", folder, e->d_name);
    if (!pki_tree_read_cert(&der, &len, path, err)) {
      pki_log("warn", "import_refused", "file", path, "reason", err->msg, NULL);
      continue;
    }
    int oom;
    import_job *ij = make_job(imp, path, der, len, kWho, &oom);
    if (ij == NULL) continue;
    /* A serial already waiting (two files of one certificate) goes once. */
    int dup = 0;
    for (import_job *w = imp->waiting; w != NULL && !dup; w = w->next) {
      dup = w->job.rec.serial.len == ij->job.rec.serial.len &&
            memcmp(w->job.rec.serial.bytes, ij->job.rec.serial.bytes, ij->job.rec.serial.len) ==
                0;
    }
    if (dup) {
      pkid_job_cleanup(&ij->job);
      free(ij);
      continue;
    }
    push_waiting(imp, ij);
  }
  closedir(d);
  submit_waiting(imp);
  return 1;
}

/* fleet_who names another node of the fleet as the journal's identity. */
static void fleet_who(char *out, size_t size, uint16_t node) {
  snprintf(out, size, "%snode %u", PKID_FLEET_WHO, node);
}

int pkid_import_fleet_cert(pkid_import *imp, uint64_t seq, uint16_t node, uint8_t *der,
                           size_t len) {
  char who[32], label[64];
  fleet_who(who, sizeof(who), node);
  snprintf(label, sizeof(label), "the fleet's database (node %u)", node);
  int oom;
  import_job *ij = make_job(imp, label, der, len, who, &oom);
  if (ij == NULL) return !oom;
  ij->job.fleet_seq = seq;
  push_waiting(imp, ij);
  submit_waiting(imp);
  return 1;
}

int pkid_import_fleet_revoke(pkid_import *imp, uint64_t seq, uint16_t node,
                             const pki_serial *serial, uint8_t reason, int64_t revoked_at,
                             int64_t invalidity_date) {
  import_job *ij = calloc(1, sizeof(*ij));
  if (ij == NULL) return 0;
  pkid_job *job = &ij->job;
  pkid_job_init(job, PKI_REC_REVOKE, on_imported);
  ij->imp = imp;
  char who[32];
  fleet_who(who, sizeof(who), node);
  pkid_job_set_identity(job, who);
  job->fleet_seq = seq;
  job->rec.serial = *serial;
  job->rec.reason = reason;
  job->rec.revoked_at = revoked_at;
  job->rec.invalidity_date = invalidity_date;
  job->now = (int64_t)time(NULL);
  push_waiting(imp, ij);
  submit_waiting(imp);
  return 1;
}

void pkid_import_on_done(pkid_import *imp,
                         void (*fn)(void *ctx, uint64_t fleet_seq, const pki_err *failure),
                         void *ctx) {
  imp->on_done = fn;
  imp->on_done_ctx = ctx;
}

pkid_import *pkid_import_new(const char *pki_dir, const pkid_cas *cas, pkid_store *store,
                             pkid_workers *workers, pki_err *err) {
  pkid_import *imp = calloc(1, sizeof(*imp));
  if (imp == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  snprintf(imp->dir, sizeof(imp->dir), "%s", pki_dir);
  imp->cas = cas;
  imp->cat = store->cat;
  imp->store = store;
  imp->workers = workers;
  return imp;
}

void pkid_import_set_catalog(pkid_import *imp, const pki_catalog *cat) { imp->cat = cat; }

size_t pkid_import_pending(const pkid_import *imp) {
  return imp->num_waiting + imp->num_in_flight;
}

void pkid_import_stop(pkid_import *imp) { imp->stopped = 1; }

void pkid_import_free(pkid_import *imp) {
  if (imp == NULL) return;
  while (imp->waiting != NULL) {
    import_job *ij = imp->waiting;
    imp->waiting = ij->next;
    pkid_job_cleanup(&ij->job);
    free(ij);
  }
  free(imp);
}
