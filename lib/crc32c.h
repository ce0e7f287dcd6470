/* crc32c.h: CRC-32C (Castagnoli), the checksum of journal records.
 *
 * CRC-32C rather than zlib's CRC-32 because x86 computes it in hardware
 * (SSE4.2 crc32 instruction) and it detects more error patterns in the
 * record sizes we write. The value is the standard one (reflected,
 * polynomial 0x1EDC6F41, initial and final XOR with all ones):
 * pki_crc32c(0, "123456789", 9) == 0xE3069283. */
#ifndef PKID_LIB_CRC32C_H
#define PKID_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* pki_crc32c extends |crc| (0 to start) with |len| bytes at |data|: the CRC
 * of A then B is pki_crc32c(pki_crc32c(0, A), B). It uses the hardware
 * instruction when the CPU has it, else pki_crc32c_sw. */
uint32_t pki_crc32c(uint32_t crc, const void *data, size_t len);

/* pki_crc32c_sw is the portable slicing-by-8 version, exposed so that tests
 * can hold the two versions against each other. */
uint32_t pki_crc32c_sw(uint32_t crc, const void *data, size_t len);

/* pki_crc32c_hw_available reports whether pki_crc32c uses the hardware. */
int pki_crc32c_hw_available(void);

#endif /* PKID_LIB_CRC32C_H */
