#include "server/rpc/frame.h"

int pkid_grpc_next_frame(const uint8_t *buf, size_t len, const uint8_t **msg,
                         size_t *msg_len, size_t *consumed) {
  if (len < PKID_GRPC_FRAME_HEADER) return 0;
  uint32_t n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
  *msg_len = n;
  /* pkid advertises no grpc-accept-encoding, so nothing may be compressed. */
  if (buf[0] != 0) return PKID_GRPC_FRAME_COMPRESSED;
  if (n > PKID_GRPC_MAX_MESSAGE) return PKID_GRPC_FRAME_TOO_LARGE;
  if (len - PKID_GRPC_FRAME_HEADER < n) return 0;
  *msg = buf + PKID_GRPC_FRAME_HEADER;
  *consumed = PKID_GRPC_FRAME_HEADER + n;
  return 1;
}

void pkid_grpc_frame_header(uint8_t out[PKID_GRPC_FRAME_HEADER], size_t len) {
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

uint64_t pkid_grpc_parse_timeout(const char *value, size_t len) {
  /* TimeoutValue is 1 to 8 digits, then a unit. */
  if (len < 2 || len > 9) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (value[i] < '0' || value[i] > '9') return 0;
    v = v * 10 + (uint64_t)(value[i] - '0');
  }
  switch (value[len - 1]) {
    case 'H': return v * 3600000;
    case 'M': return v * 60000;
    case 'S': return v * 1000;
    case 'm': return v > 0 ? v : 1;
    case 'u': return v / 1000 > 0 ? v / 1000 : 1;
    case 'n': return v / 1000000 > 0 ? v / 1000000 : 1;
    default: return 0;
  }
}
