/* pkiclient_call.c: the channel, and unary and streaming calls on gRPC
 * core with deadlines and retries.
 *
 * Every call (each attempt) has its own completion queue, so calls from
 * many threads never wait on one another; the channel is shared. */
#include "client/pkiclient_call.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "lib/file.h"
#include "lib/grpc_status.h"

#define PEM_FILE_MAX (1u << 20)
#define DEFAULT_DEADLINE_US (30ull * 1000 * 1000)
/* How long past its deadline a call may take to wind down before we cancel
 * it ourselves; gRPC ends it at the deadline, so this is only a backstop. */
#define WIND_DOWN_MS 5000

void pkc_err_set(pkc_error *err, int status, int local, const char *fmt, ...) {
  if (err == NULL) return;
  err->status = status;
  err->local = local;
  err->server_refused = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
}

void pkc_err_from_pki(pkc_error *err, const pki_err *e) {
  pkc_err_set(err, (int)pki_grpc_status_from_err(e->code), 1, "%s", e->msg);
}

/* --- the client --- */

static void resolve_retry(pkc_retry_policy *out, const pkc_retry_policy *in) {
  *out = *in;
  if (out->max_attempts == 0) out->max_attempts = 4;
  if (out->initial_backoff_ms == 0) out->initial_backoff_ms = 100;
  if (out->max_backoff_ms == 0) out->max_backoff_ms = 5000;
  if (out->max_backoff_ms < out->initial_backoff_ms) {
    out->max_backoff_ms = out->initial_backoff_ms;
  }
  if (!(out->multiplier >= 1.0)) out->multiplier = 2.0;
  if (!(out->jitter >= 0.0)) out->jitter = 0.0;
  if (out->jitter > 1.0) out->jitter = 1.0;
}

static int read_pem(char **out, const char *path, const char *what, pkc_error *err) {
  uint8_t *data;
  size_t len;
  pki_err e;
  if (!pki_file_read(&data, &len, path, PEM_FILE_MAX, &e)) {
    pkc_err_set(err, e.code == PKI_ERR_NOT_FOUND ? PKC_STATUS_NOT_FOUND
                                                 : PKC_STATUS_INVALID_ARGUMENT,
                1, "%s %s: %s", what, path, e.msg);
    return 0;
  }
  *out = (char *)data; /* pki_file_read adds a NUL */
  return 1;
}

static void free_secret(char *s) {
  if (s == NULL) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

pkc_client *pkc_client_new(const pkc_options *opts, pkc_error *err) {
  pkc_err_set(err, PKC_STATUS_OK, 0, "%s", "");
  if (err != NULL) err->attempts = 0;
  if (opts == NULL || opts->target == NULL || opts->target[0] == '\0' ||
      opts->root_pem_file == NULL) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "options need a target and a root certificate file");
    return NULL;
  }
  if ((opts->cert_pem_file == NULL) != (opts->key_pem_file == NULL)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "a client certificate needs its key, and a key its certificate");
    return NULL;
  }
  char *root = NULL, *cert = NULL, *chain = NULL, *key = NULL, *full = NULL;
  pkc_client *client = NULL;
  pkc_certs roots = {0};
  pkc_peer_check *peer = NULL;
  if (!read_pem(&root, opts->root_pem_file, "root certificates", err)) goto out;
  {
    char what[1200];
    snprintf(what, sizeof(what), "root certificates %s", opts->root_pem_file);
    if (!pkc_certs_from_pem(&roots, (const uint8_t *)root, strlen(root), what, err)) goto out;
  }
  peer = pkc_peer_check_new(opts, err);
  if (peer == NULL) goto out;
  if (opts->cert_pem_file != NULL) {
    if (!read_pem(&cert, opts->cert_pem_file, "client certificate", err) ||
        !read_pem(&key, opts->key_pem_file, "client key", err) ||
        (opts->chain_pem_file != NULL &&
         !read_pem(&chain, opts->chain_pem_file, "client chain", err))) {
      goto out;
    }
    size_t cert_len = strlen(cert), chain_len = chain != NULL ? strlen(chain) : 0;
    full = malloc(cert_len + 1 + chain_len + 1);
    if (full == NULL) {
      pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
      goto out;
    }
    memcpy(full, cert, cert_len);
    size_t n = cert_len;
    if (n > 0 && full[n - 1] != '\n') full[n++] = '\n';
    if (chain_len > 0) memcpy(full + n, chain, chain_len);
    full[n + chain_len] = '\0';
  }
  client = calloc(1, sizeof(*client));
  if (client == NULL || (client->target = strdup(opts->target)) == NULL) {
    free(client);
    client = NULL;
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    goto out;
  }
  client->deadline_us = opts->deadline_us != 0 ? opts->deadline_us : DEFAULT_DEADLINE_US;
  resolve_retry(&client->retry, &opts->retry);

  grpc_init();
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = full};
  /* After its own chain check, gRPC hands us the server's certificate:
   * the credentials take a reference to the check, dropped when they go. */
  pkc_peer_check_ref(peer);
  grpc_ssl_verify_peer_options verify = {
      .verify_peer_callback = pkc_peer_check_grpc_verify,
      .verify_peer_callback_userdata = peer,
      .verify_peer_destruct = pkc_peer_check_grpc_destruct,
  };
  grpc_channel_credentials *creds =
      grpc_ssl_credentials_create_ex(root, full != NULL ? &pair : NULL, &verify, NULL);
  if (creds == NULL) {
    pkc_peer_check_unref(peer);
    grpc_shutdown();
    free(client->target);
    free(client);
    client = NULL;
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "gRPC refused the TLS credentials");
    goto out;
  }
  grpc_arg args[3];
  size_t num_args = 0;
  /* A connection of its own: two clients with different certificates never
   * share a subchannel. */
  args[num_args].type = GRPC_ARG_INTEGER;
  args[num_args].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
  args[num_args++].value.integer = 1;
  /* Reconnect no more lazily than our own retries back off. */
  args[num_args].type = GRPC_ARG_INTEGER;
  args[num_args].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
  args[num_args++].value.integer = (int)client->retry.max_backoff_ms;
  if (opts->server_name_override != NULL && opts->server_name_override[0] != '\0') {
    args[num_args].type = GRPC_ARG_STRING;
    args[num_args].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[num_args++].value.string = (char *)opts->server_name_override;
  }
  grpc_channel_args channel_args = {.num_args = num_args, .args = args};
  client->channel = grpc_channel_create(opts->target, creds, &channel_args);
  grpc_channel_credentials_release(creds);
  if (client->channel == NULL) {
    grpc_shutdown();
    free(client->target);
    free(client);
    client = NULL;
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "no channel to %s", opts->target);
    goto out;
  }
  client->peer = peer;
  client->roots = roots;
  peer = NULL;
  memset(&roots, 0, sizeof(roots));
out:
  pkc_peer_check_unref(peer);
  pkc_certs_cleanup(&roots);
  free(root);
  free(cert);
  free(chain);
  free_secret(key);
  free(full);
  return client;
}

void pkc_client_free(pkc_client *client) {
  if (client == NULL) return;
  grpc_channel_destroy(client->channel);
  pkc_peer_check_unref(client->peer);
  pkc_certs_cleanup(&client->roots);
  free(client->target);
  free(client);
  /* The last shutdown, on a thread of ours, cleans up synchronously. */
  grpc_shutdown();
}

/* --- one attempt --- */

static gpr_timespec deadline_after_us(uint64_t us) {
  return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                      gpr_time_from_micros((int64_t)us, GPR_TIMESPAN));
}

static grpc_byte_buffer *buffer_of(const uint8_t *data, size_t len) {
  grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return bb;
}

/* read_buffer copies a received message into a malloc'd buffer. */
static int read_buffer(uint8_t **out, size_t *out_len, grpc_byte_buffer *bb,
                       pkc_error *err) {
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb)) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "cannot read the response message");
    return 0;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  size_t len = GRPC_SLICE_LENGTH(all);
  uint8_t *data = malloc(len > 0 ? len : 1);
  if (data == NULL) {
    grpc_slice_unref(all);
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  if (len > 0) memcpy(data, GRPC_SLICE_START_PTR(all), len);
  grpc_slice_unref(all);
  *out = data;
  *out_len = len;
  return 1;
}

/* The status of a finished call, and the objects that receive it. */
typedef struct call_status {
  grpc_status_code code;
  grpc_slice details;
  const char *error_string;
  grpc_metadata_array initial_md, trailing_md;
} call_status;

static void call_status_init(call_status *s) {
  memset(s, 0, sizeof(*s));
  s->code = GRPC_STATUS_UNKNOWN;
  s->details = grpc_empty_slice();
  grpc_metadata_array_init(&s->initial_md);
  grpc_metadata_array_init(&s->trailing_md);
}

/* call_status_finish sets |err| from the status (the server's message, or
 * gRPC's own words for a local failure) and frees what it holds. */
static void call_status_finish(call_status *s, pkc_error *err) {
  size_t len = GRPC_SLICE_LENGTH(s->details);
  if (len > 0) {
    pkc_err_set(err, (int)s->code, 0, "%.*s", (int)len,
                (const char *)GRPC_SLICE_START_PTR(s->details));
  } else if (s->code != GRPC_STATUS_OK && s->error_string != NULL) {
    pkc_err_set(err, (int)s->code, 0, "%s", s->error_string);
  } else {
    pkc_err_set(err, (int)s->code, 0, "%s", s->code == GRPC_STATUS_OK ? "" :
                pkc_status_name((int)s->code));
  }
  grpc_slice_unref(s->details);
  if (s->error_string != NULL) gpr_free((void *)s->error_string);
  grpc_metadata_array_destroy(&s->initial_md);
  grpc_metadata_array_destroy(&s->trailing_md);
}

static grpc_call *start_call(pkc_client *client, grpc_completion_queue *cq,
                             const char *method, gpr_timespec deadline) {
  grpc_slice method_slice = grpc_slice_from_static_string(method);
  return grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                  method_slice, NULL, deadline, NULL);
}

static void destroy_cq(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

/* wait_event waits for the next completion; past the deadline and its
 * grace it cancels the call, which makes every batch complete. */
static grpc_event wait_event(grpc_completion_queue *cq, grpc_call *call,
                             gpr_timespec deadline) {
  gpr_timespec limit = gpr_time_add(deadline, gpr_time_from_millis(WIND_DOWN_MS, GPR_TIMESPAN));
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, limit, NULL);
    if (ev.type != GRPC_QUEUE_TIMEOUT) return ev;
    grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                 "the call outlived its deadline", NULL);
    limit = gpr_inf_future(GPR_CLOCK_REALTIME);
  }
}

static int unary_attempt(pkc_client *client, const char *method, const uint8_t *req,
                         size_t req_len, uint8_t **out, size_t *out_len, pkc_error *err) {
  gpr_timespec deadline = deadline_after_us(client->deadline_us);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  grpc_call *call = start_call(client, cq, method, deadline);
  grpc_byte_buffer *send = buffer_of(req, req_len), *recv = NULL;
  call_status st;
  call_status_init(&st);

  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &st.initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &st.trailing_md;
  ops[5].data.recv_status_on_client.status = &st.code;
  ops[5].data.recv_status_on_client.status_details = &st.details;
  ops[5].data.recv_status_on_client.error_string = &st.error_string;
  int ok = 0;
  grpc_call_error ce = grpc_call_start_batch(call, ops, 6, (void *)1, NULL);
  if (ce != GRPC_CALL_OK) {
    call_status_finish(&st, err);
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "gRPC refused the call (%d)", (int)ce);
  } else {
    (void)wait_event(cq, call, deadline);
    call_status_finish(&st, err);
    if (st.code == GRPC_STATUS_OK) {
      if (recv == NULL) {
        pkc_err_set(err, PKC_STATUS_INTERNAL, 0, "pkid answered OK with no message");
      } else {
        ok = read_buffer(out, out_len, recv, err);
      }
    }
  }
  if (recv != NULL) grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  grpc_call_unref(call);
  destroy_cq(cq);
  return ok;
}

enum { TAG_SEND = 1, TAG_RECV, TAG_STATUS };

static int stream_attempt(pkc_client *client, const char *method, const pkc_der *reqs,
                          size_t num, pkc_stream_on_message on_message, void *ctx,
                          size_t *out_received, pkc_error *err) {
  gpr_timespec deadline = deadline_after_us(client->deadline_us);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  grpc_call *call = start_call(client, cq, method, deadline);
  grpc_byte_buffer *send = NULL, *recv = NULL;
  call_status st;
  call_status_init(&st);
  pkc_error cb_err;
  int cb_failed = 0, outstanding = 0;
  size_t next = 0, received = 0;
  int closed = 0;
  grpc_op op[2];

  /* The status, whenever the call ends. */
  memset(op, 0, sizeof(op));
  op[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op[0].data.recv_status_on_client.trailing_metadata = &st.trailing_md;
  op[0].data.recv_status_on_client.status = &st.code;
  op[0].data.recv_status_on_client.status_details = &st.details;
  op[0].data.recv_status_on_client.error_string = &st.error_string;
  if (grpc_call_start_batch(call, op, 1, (void *)TAG_STATUS, NULL) != GRPC_CALL_OK) {
    call_status_finish(&st, err);
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "gRPC refused the stream");
    grpc_call_unref(call);
    destroy_cq(cq);
    *out_received = 0;
    return 0;
  }
  outstanding++;

  /* Sends: one message in flight at a time, then the half-close. */
  memset(op, 0, sizeof(op));
  op[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (num > 0) {
    send = buffer_of(reqs[0].data, reqs[0].len);
    op[1].op = GRPC_OP_SEND_MESSAGE;
    op[1].data.send_message.send_message = send;
    next = 1;
  } else {
    op[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    closed = 1;
  }
  if (grpc_call_start_batch(call, op, 2, (void *)TAG_SEND, NULL) == GRPC_CALL_OK) {
    outstanding++;
  } else {
    grpc_call_cancel(call, NULL);
  }

  /* Receives: one message at a time, read as it comes, so neither side
   * stalls on flow control however long the stream. */
  memset(op, 0, sizeof(op));
  op[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  op[0].data.recv_initial_metadata.recv_initial_metadata = &st.initial_md;
  op[1].op = GRPC_OP_RECV_MESSAGE;
  op[1].data.recv_message.recv_message = &recv;
  if (grpc_call_start_batch(call, op, 2, (void *)TAG_RECV, NULL) == GRPC_CALL_OK) {
    outstanding++;
  } else {
    grpc_call_cancel(call, NULL);
  }

  while (outstanding > 0) {
    grpc_event ev = wait_event(cq, call, deadline);
    if (ev.type != GRPC_OP_COMPLETE) break; /* cannot happen: the queue is ours */
    switch ((intptr_t)ev.tag) {
      case TAG_SEND:
        if (send != NULL) {
          grpc_byte_buffer_destroy(send);
          send = NULL;
        }
        memset(op, 0, sizeof(op));
        if (ev.success && next < num) {
          send = buffer_of(reqs[next].data, reqs[next].len);
          op[0].op = GRPC_OP_SEND_MESSAGE;
          op[0].data.send_message.send_message = send;
          next++;
        } else if (ev.success && !closed) {
          op[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
          closed = 1;
        } else {
          outstanding--; /* all sent, or the call is over */
          break;
        }
        if (grpc_call_start_batch(call, op, 1, (void *)TAG_SEND, NULL) != GRPC_CALL_OK) {
          outstanding--;
          grpc_call_cancel(call, NULL);
        }
        break;
      case TAG_RECV:
        if (!ev.success || recv == NULL) {
          outstanding--; /* end of the responses */
          break;
        }
        {
          uint8_t *msg = NULL;
          size_t len = 0;
          int ok = read_buffer(&msg, &len, recv, &cb_err);
          grpc_byte_buffer_destroy(recv);
          recv = NULL;
          if (ok) {
            received++;
            ok = on_message(ctx, msg, len, &cb_err);
          }
          free(msg);
          if (!ok && !cb_failed) {
            cb_failed = 1;
            grpc_call_cancel_with_status(call, GRPC_STATUS_INTERNAL, cb_err.message, NULL);
          }
        }
        memset(op, 0, sizeof(op));
        op[0].op = GRPC_OP_RECV_MESSAGE;
        op[0].data.recv_message.recv_message = &recv;
        if (grpc_call_start_batch(call, op, 1, (void *)TAG_RECV, NULL) != GRPC_CALL_OK) {
          outstanding--;
          grpc_call_cancel(call, NULL);
        }
        break;
      case TAG_STATUS:
        outstanding--;
        break;
      default:
        break;
    }
  }
  call_status_finish(&st, err);
  if (cb_failed) {
    pkc_err_set(err, cb_err.status, cb_err.local, "%s", cb_err.message);
  }
  if (send != NULL) grpc_byte_buffer_destroy(send);
  if (recv != NULL) grpc_byte_buffer_destroy(recv);
  grpc_call_unref(call);
  destroy_cq(cq);
  *out_received = received;
  return !cb_failed && st.code == GRPC_STATUS_OK;
}

/* --- retries --- */

static int should_retry(const pkc_error *err) {
  return !err->local && pki_grpc_status_retryable(err->status);
}

/* note_refusal turns a failed attempt into a refusal when the handshake
 * behind it was refused by our check of who pkid is: gRPC reports only
 * UNAVAILABLE ("failed to connect"), and the reason lives in the check.
 * A refusal is local and not retryable (should_retry says no). */
static void note_refusal(pkc_client *client, pkc_error *err) {
  char why[400];
  if (err->local || err->status != PKC_STATUS_UNAVAILABLE ||
      !pkc_peer_check_refused(client->peer, why, sizeof(why))) {
    return;
  }
  pkc_err_set(err, PKC_STATUS_UNAUTHENTICATED, 1, "the server at %s is not pkid: %s",
              client->target, why);
  err->server_refused = 1;
}

/* backoff_sleep sleeps before retry number |retry| (1 for the first). */
static void backoff_sleep(const pkc_retry_policy *p, unsigned retry) {
  double ms = p->initial_backoff_ms;
  for (unsigned i = 1; i < retry && ms < p->max_backoff_ms; i++) ms *= p->multiplier;
  if (ms > p->max_backoff_ms) ms = p->max_backoff_ms;
  if (p->jitter > 0) {
    uint32_t r = 0;
    RAND_bytes((uint8_t *)&r, sizeof(r));
    double u = (double)r / 4294967295.0; /* [0, 1] */
    ms *= 1.0 - p->jitter + 2.0 * p->jitter * u;
  }
  long long ns = (long long)(ms * 1e6);
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000LL),
                        .tv_nsec = (long)(ns % 1000000000LL)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* try_again is the one retry rule for both kinds of call: after attempt
 * number |attempt| failed with |err|, it says whether to make another, and
 * if so waits the backoff first. */
static int try_again(pkc_client *client, unsigned attempt, pkc_error *err) {
  err->attempts = attempt;
  note_refusal(client, err);
  if (attempt >= client->retry.max_attempts || !should_retry(err)) return 0;
  backoff_sleep(&client->retry, attempt);
  grpc_channel_reset_connect_backoff(client->channel);
  return 1;
}

int pkc_call_unary(pkc_client *client, const char *method, const uint8_t *req,
                   size_t req_len, uint8_t **out, size_t *out_len, pkc_error *err) {
  pkc_error local;
  if (err == NULL) err = &local;
  *out = NULL;
  *out_len = 0;
  for (unsigned attempt = 1;; attempt++) {
    if (unary_attempt(client, method, req, req_len, out, out_len, err)) {
      err->attempts = attempt;
      return 1;
    }
    if (!try_again(client, attempt, err)) return 0;
  }
}

int pkc_call_stream(pkc_client *client, const char *method, const pkc_der *reqs,
                    size_t num, pkc_stream_on_message on_message, void *ctx,
                    pkc_error *err) {
  pkc_error local;
  if (err == NULL) err = &local;
  for (unsigned attempt = 1;; attempt++) {
    size_t received = 0;
    if (stream_attempt(client, method, reqs, num, on_message, ctx, &received, err)) {
      err->attempts = attempt;
      return 1;
    }
    /* Once answers came back, trying again would issue twice. */
    if (received > 0) {
      err->attempts = attempt;
      note_refusal(client, err);
      return 0;
    }
    if (!try_again(client, attempt, err)) return 0;
  }
}
