/* api.h: the pki.v1.Pki service: who may call what, and the answers.
 *
 * Each method decodes its request (protobuf-c), authorizes it against the
 * caller's identity and the catalogue, and answers through grpc.h. The
 * signing work goes to pkid_issue_run (issue.h). */
#ifndef PKID_SERVER_API_H
#define PKID_SERVER_API_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/token.h"
#include "server/ca.h"
#include "server/grpc.h"
#include "server/issue.h"

struct pkid_workers;
struct pkid_store;
struct pkid_status;

/* Serial sequence numbers are reserved in blocks of this many; the next
 * block is reserved when half of the current one is used. */
#define PKID_SERIAL_BLOCK 65536

typedef struct pkid_api {
  const pki_catalog *cat;
  const pkid_cas *cas;
  uint16_t node;     /* this node's serial prefix */
  uint64_t next_seq; /* the next serial sequence number to use */
  uint64_t seq_end;  /* the end of the reserved blocks */
  int reserving;     /* a block reservation is in flight */
  struct pkid_workers *workers;
  struct pkid_store *store;
  struct pkid_status *status;
  int bootstrap; /* bootstrap tokens accepted (a token key was found) */
  uint8_t token_key[PKI_TOKEN_KEY_LEN];
} pkid_api;

/* pkid_api_on_done answers the call of a finished job and frees the job;
 * the worker pool's done callback (loop thread), with the api as ctx. */
void pkid_api_on_done(void *ctx, pkid_job *job);

/* pkid_api_methods returns the method table served at /pki.v1.Pki/... */
const pkid_method *pkid_api_methods(size_t *out_num);

#endif /* PKID_SERVER_API_H */
