/* frame.h: gRPC's length-prefixed messages and grpc-timeout values
 * (grpc/doc/PROTOCOL-HTTP2.md). Pure functions, no state: the fuzz target
 * calls them directly. */
#ifndef PKID_SERVER_RPC_FRAME_H
#define PKID_SERVER_RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* A frame's header: the compressed flag, then a 4-octet big-endian length. */
#define PKID_GRPC_FRAME_HEADER 5

/* The largest request message accepted; larger ones get RESOURCE_EXHAUSTED
 * (as gRPC's own servers answer). A CSR is a few hundred bytes. */
#define PKID_GRPC_MAX_MESSAGE (64 * 1024)

/* pkid_grpc_next_frame reads one length-prefixed message from the front of
 * |buf|. It returns 1 with the message in |*msg| and |*consumed| bytes
 * used, 0 when more bytes are needed, or a negative error:
 * PKID_GRPC_FRAME_COMPRESSED (flag set; pkid takes no compression) or
 * PKID_GRPC_FRAME_TOO_LARGE (over PKID_GRPC_MAX_MESSAGE, |*msg_len| says
 * how large). */
#define PKID_GRPC_FRAME_COMPRESSED (-1)
#define PKID_GRPC_FRAME_TOO_LARGE (-2)
int pkid_grpc_next_frame(const uint8_t *buf, size_t len, const uint8_t **msg,
                         size_t *msg_len, size_t *consumed);

/* pkid_grpc_frame_header writes the header of an uncompressed message of
 * |len| bytes. */
void pkid_grpc_frame_header(uint8_t out[PKID_GRPC_FRAME_HEADER], size_t len);

/* pkid_grpc_parse_timeout parses a grpc-timeout value ("100m", "5S") into
 * milliseconds (at least 1); 0 if malformed. */
uint64_t pkid_grpc_parse_timeout(const char *value, size_t len);

#endif /* PKID_SERVER_RPC_FRAME_H */
