/* peer.h: who is at the other end of a connection, as the transport
 * verified it at the TLS handshake. The rpc layer gives every call a
 * pointer to its connection's peer; the api layer decides from it what the
 * caller may do, and never sees the connection itself. */
#ifndef PKID_SERVER_TRANSPORT_PEER_H
#define PKID_SERVER_TRANSPORT_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hostport.h"
#include "lib/serial.h"

typedef struct pkid_peer {
  /* The verified client certificate's first URI SAN (pkid's identities),
   * "" when the client sent no certificate (bootstrap) or it has none. */
  char identity[512];
  /* That certificate, DER; NULL when none. */
  uint8_t *leaf;
  size_t leaf_len;
  /* Its serial without a sign octet, as the status index keys it; len 0
   * when none or too long for pkid's serials. */
  pki_serial serial;
  /* Its authorityKeyIdentifier: which of pkid's CAs issued it. */
  uint8_t issuer_key_id[64];
  size_t issuer_key_id_len;
  int64_t not_before, not_after;
  /* The client's address, "HOST:PORT". */
  char address[PKI_HOSTPORT_MAX];
} pkid_peer;

#endif /* PKID_SERVER_TRANSPORT_PEER_H */
