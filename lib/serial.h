/* serial.h: certificate serial numbers.
 *
 * A serial is 19 octets, so always positive and within RFC 5280's 20:
 *
 *   0x01 | node (2 octets) | sequence (8 octets) | random (8 octets)
 *
 * The leading 0x01 keeps the INTEGER positive and minimally encoded at a
 * fixed length. The node prefix separates cluster nodes (node 0 is the
 * offline ceremony tool), the sequence comes from a block the node reserved
 * in its journal before use (so it is never reused after a crash), and 64
 * bits from the CSPRNG make serials unpredictable, as the CA/Browser Forum
 * asks, even where the rest is known. */
#ifndef PKID_LIB_SERIAL_H
#define PKID_LIB_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_SERIAL_LEN 19
#define PKI_SERIAL_MAX 20 /* RFC 5280 4.1.2.2 */

typedef struct pki_serial {
  uint8_t bytes[PKI_SERIAL_MAX];
  size_t len;
} pki_serial;

/* pki_serial_make builds the serial for |node| and |seq| with fresh random
 * bits. */
int pki_serial_make(pki_serial *out, uint16_t node, uint64_t seq, pki_err *err);

/* pki_serial_to_hex writes lower-case hex, NUL-terminated, into |out| (at
 * least 2 * PKI_SERIAL_MAX + 1 bytes). */
void pki_serial_to_hex(char *out, const pki_serial *serial);

/* pki_serial_from_hex parses hex (as pki_serial_to_hex writes, or with
 * colons) as a positive serial of 1 to 20 octets. */
int pki_serial_from_hex(pki_serial *out, const char *hex, pki_err *err);

#endif /* PKID_LIB_SERIAL_H */
