/* grpc_message_fuzz: gRPC request bodies as pkid reads them: the
 * length-prefixed framing (pkid_grpc_next_frame), then every request
 * message type of pki.v1 decoded by protobuf-c from each frame. */
#include <stddef.h>
#include <stdint.h>

#include "proto/pki/v1/pki.pb-c.h"
#include "server/rpc/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  size_t off = 0;
  for (;;) {
    const uint8_t *msg = NULL;
    size_t msg_len = 0, used = 0;
    int r = pkid_grpc_next_frame(data + off, len - off, &msg, &msg_len, &used);
    if (r <= 0) break;
    if (used < 5 || used > len - off) __builtin_trap();
    off += used;
    Pki__V1__IssueRequest *issue = pki__v1__issue_request__unpack(NULL, msg_len, msg);
    if (issue != NULL) pki__v1__issue_request__free_unpacked(issue, NULL);
    Pki__V1__RenewRequest *renew = pki__v1__renew_request__unpack(NULL, msg_len, msg);
    if (renew != NULL) pki__v1__renew_request__free_unpacked(renew, NULL);
    Pki__V1__RevokeRequest *revoke = pki__v1__revoke_request__unpack(NULL, msg_len, msg);
    if (revoke != NULL) pki__v1__revoke_request__free_unpacked(revoke, NULL);
    Pki__V1__GetStatusRequest *status = pki__v1__get_status_request__unpack(NULL, msg_len, msg);
    if (status != NULL) pki__v1__get_status_request__free_unpacked(status, NULL);
    Pki__V1__GetTrustBundleRequest *bundle =
        pki__v1__get_trust_bundle_request__unpack(NULL, msg_len, msg);
    if (bundle != NULL) pki__v1__get_trust_bundle_request__free_unpacked(bundle, NULL);
  }
  return 0;
}
