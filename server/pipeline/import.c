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
  import_job *waiting; /* made, not yet taken by the pool */
  size_t num_waiting, num_in_flight;
  int stopped; /* the pool is stopping: nothing more is submitted */
};

static const char kWho[] = "offline-ceremony";

static void submit_waiting(pkid_import *imp);

static void on_imported(pkid_job *job) {
  import_job *ij = (import_job *)((char *)job - offsetof(import_job, job));
  pkid_import *imp = ij->imp;
  char hex[2 * PKI_SERIAL_MAX + 1];
  pki_serial_to_hex(hex, &job->rec.serial);
  if (job->ok) {
    pkid_job_apply(job, imp->store);
    pki_log("info", "imported", "serial", hex, "service", job->rec.service, NULL);
  } else {
    pki_log("error", "import_failed", "serial", hex, "reason", job->err.msg, NULL);
  }
  pkid_job_cleanup(job);
  free(ij);
  imp->num_in_flight--;
  submit_waiting(imp);
}

static void submit_waiting(pkid_import *imp) {
  while (imp->waiting != NULL && !imp->stopped) {
    import_job *ij = imp->waiting;
    pki_err err;
    if (!pkid_workers_submit(imp->workers, &ij->job, &err)) return; /* room later */
    imp->waiting = ij->next;
    imp->num_waiting--;
    imp->num_in_flight++;
  }
}

/* issuer_of finds the loaded CA that signed |info|. */
static const pkid_ca *issuer_of(const pkid_import *imp, const pki_cert_info *info) {
  for (size_t i = 0; i < imp->cas->num_cas; i++) {
    const pkid_ca *ca = &imp->cas->cas[i];
    if (!info->has_aki || !CBS_mem_equal(&info->aki, ca->issuer.ski, ca->issuer.ski_len) ||
        !CBS_mem_equal(&info->issuer, ca->issuer.name, ca->issuer.name_len)) {
      continue;
    }
    pki_cert_info ca_info;
    pki_err err;
    int ok = pki_cert_info_parse(&ca_info, ca->issuer.cert, ca->issuer.cert_len, &err) &&
             pki_cert_verify_signature(info, &ca_info.spki, &err);
    pki_cert_info_cleanup(&ca_info);
    if (ok) return ca;
  }
  return NULL;
}

/* make_job turns a certificate into an import job, or NULL (logged) if it
 * is not one pkid should import: not ours, or known already. */
static import_job *make_job(pkid_import *imp, const char *path, uint8_t *der, size_t len) {
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
  } else if (!pkid_status_get(imp->store->status, CBS_data(&serial), CBS_len(&serial),
                              &known) &&
             (ij = calloc(1, sizeof(*ij))) != NULL) {
    pkid_job *job = &ij->job;
    pkid_job_init(job, PKID_REC_ISSUE, on_imported);
    ij->imp = imp;
    pkid_job_set_identity(job, kWho);
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
    job->cert = der; /* signed already: the worker signs only its OCSP response */
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
    import_job *ij = make_job(imp, path, der, len);
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
    ij->next = imp->waiting;
    imp->waiting = ij;
    imp->num_waiting++;
  }
  closedir(d);
  submit_waiting(imp);
  return 1;
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
