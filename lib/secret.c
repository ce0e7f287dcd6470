#include "lib/secret.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "lib/file.h"

/* in_credentials_dir says whether |file| is directly in systemd's
 * $CREDENTIALS_DIRECTORY (secret.h). */
static int in_credentials_dir(const char *file) {
  const char *creds = getenv("CREDENTIALS_DIRECTORY");
  if (creds == NULL || creds[0] == '\0') return 0;
  char *dir = realpath(creds, NULL), *path = realpath(file, NULL);
  int in = 0;
  if (dir != NULL && path != NULL) {
    size_t n = strlen(dir);
    in = strncmp(path, dir, n) == 0 && path[n] == '/' && strchr(path + n + 1, '/') == NULL;
  }
  free(dir);
  free(path);
  return in;
}

/* private_enough applies secret.h's rule to a file's owner and mode. */
static int private_enough(const char *file, const struct stat *st) {
  if ((st->st_mode & 077) == 0 && st->st_uid == geteuid()) return 1;
  return (st->st_mode & 027) == 0 && (st->st_uid == 0 || st->st_uid == geteuid()) &&
         in_credentials_dir(file);
}

int pki_secret_read(pki_secret *out, const char *file, const char *env, pki_err *err) {
  memset(out, 0, sizeof(*out));
  const char *text = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  if (file != NULL) {
    struct stat st;
    if (stat(file, &st) == 0 && !private_enough(file, &st)) {
      PKI_ERR(err, PKI_ERR_DENIED,
              "passphrase file %s is readable by others (mode %04o, owner %u): it must be "
              "yours and mode 0600",
              file, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
      return 0;
    }
    if (!pki_file_read(&buf, &len, file, 4096, err)) {
      pki_err_prefix(err, "passphrase file: ");
      return 0;
    }
    text = (const char *)buf;
  } else {
    text = env != NULL ? getenv(env) : NULL;
    if (text == NULL) {
      PKI_ERR(err, PKI_ERR_INVALID, "no passphrase: give a passphrase file or set %s",
              env != NULL ? env : "a passphrase");
      return 0;
    }
    len = strlen(text);
  }
  size_t n = 0;
  while (n < len && text[n] != '\n' && text[n] != '\r') n++;
  int ok = 1;
  if (n == 0 || n > sizeof(out->bytes)) {
    PKI_ERR(err, PKI_ERR_INVALID, "passphrase must be 1 to %zu bytes", sizeof(out->bytes));
    ok = 0;
  } else {
    memcpy(out->bytes, text, n);
    out->len = n;
  }
  if (buf != NULL) {
    OPENSSL_cleanse(buf, len);
    free(buf);
  } else {
    /* getenv points into the environment block that /proc/PID/environ
     * shows: wipe it there, then drop the variable. */
    OPENSSL_cleanse((char *)text, len);
    unsetenv(env);
  }
  return ok;
}

void pki_secret_cleanup(pki_secret *secret) { OPENSSL_cleanse(secret, sizeof(*secret)); }
