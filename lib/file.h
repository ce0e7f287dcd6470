/* file.h: files written so that a crash never leaves half of one.
 *
 * pki_file_write_atomic writes to a temporary file in the same directory,
 * sets its mode, fsyncs it, renames it over |path| and fsyncs the directory:
 * a reader (or a restart after a crash) sees the old content or the new. */
#ifndef PKID_LIB_FILE_H
#define PKID_LIB_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/err.h"

int pki_file_write_atomic(const char *path, const void *data, size_t len,
                          mode_t mode, pki_err *err);

/* pki_file_read reads all of |path| into a malloc'd buffer with a NUL byte
 * after the content (not counted in |*out_len|). Files larger than |max_len|
 * are refused with PKI_ERR_INVALID; a missing file is PKI_ERR_NOT_FOUND. */
int pki_file_read(uint8_t **out, size_t *out_len, const char *path,
                  size_t max_len, pki_err *err);

/* pki_mkdirs creates |dir| and its missing parents with |mode|, syncing the
 * parent of each directory it creates so that the new entries survive a
 * crash. */
int pki_mkdirs(const char *dir, mode_t mode, pki_err *err);

/* pki_file_exists reports whether |path| exists. */
int pki_file_exists(const char *path);

#endif /* PKID_LIB_FILE_H */
