/* text.h: the numbers of pkid's own text files (the SIEM cursor, the
 * ceremony log), read strictly so that one value has one spelling and a
 * file that parses formats back to the same octets. */
#ifndef PKID_LIB_TEXT_H
#define PKID_LIB_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* pki_text_hex writes |n| octets as 2n lower-case hex digits and a NUL. */
void pki_text_hex(char *out, const uint8_t *p, size_t n);

/* pki_text_unhex reads exactly |n| octets from 2n lower-case hex digits
 * (a NUL-terminated |text|). */
int pki_text_unhex(const char *text, uint8_t *out, size_t n);

/* pki_text_u64 reads a decimal without sign or leading zeros. */
int pki_text_u64(const char *text, uint64_t *out);

#endif /* PKID_LIB_TEXT_H */
