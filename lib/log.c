#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* append_json appends |s| as a JSON string to |buf| at |*pos|. */
static void append_json(char *buf, size_t size, size_t *pos, const char *s) {
  static const char hex[] = "0123456789abcdef";
  if (*pos < size) buf[(*pos)++] = '"';
  for (; *s != '\0' && *pos + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[(*pos)++] = '\\';
      buf[(*pos)++] = (char)c;
    } else if (c < 0x20) {
      buf[(*pos)++] = '\\';
      buf[(*pos)++] = 'u';
      buf[(*pos)++] = '0';
      buf[(*pos)++] = '0';
      buf[(*pos)++] = hex[c >> 4];
      buf[(*pos)++] = hex[c & 15];
    } else {
      buf[(*pos)++] = (char)c;
    }
  }
  if (*pos < size) buf[(*pos)++] = '"';
}

void pki_log(const char *level, const char *event, ...) {
  char line[4096];
  size_t pos = 0;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  pos += strftime(line, sizeof(line), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
  pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ".%03dZ\",\"level\":",
                          (int)(tv.tv_usec / 1000));
  append_json(line, sizeof(line) - 3, &pos, level);
  memcpy(line + pos, ",\"event\":", 9);
  pos += 9;
  append_json(line, sizeof(line) - 3, &pos, event);
  va_list ap;
  va_start(ap, event);
  const char *key;
  while ((key = va_arg(ap, const char *)) != NULL) {
    const char *value = va_arg(ap, const char *);
    if (pos + 4 >= sizeof(line) - 3) break;
    line[pos++] = ',';
    append_json(line, sizeof(line) - 3, &pos, key);
    line[pos++] = ':';
    append_json(line, sizeof(line) - 3, &pos, value != NULL ? value : "");
  }
  va_end(ap);
  line[pos++] = '}';
  line[pos++] = '\n';
  /* One write per line keeps lines whole when threads log at once. */
  ssize_t unused = write(STDERR_FILENO, line, pos);
  (void)unused;
}

int pki_log_allow(pki_log_limit *limit) {
  long now = (long)time(NULL);
  if (now != limit->second) {
    limit->second = now;
    limit->written = 0;
  }
  if (limit->written >= limit->per_second) {
    limit->suppressed++;
    return 0;
  }
  limit->written++;
  return 1;
}

const char *pki_log_suppressed(pki_log_limit *limit) {
  static char text[24];
  snprintf(text, sizeof(text), "%u", limit->suppressed);
  limit->suppressed = 0;
  return text;
}
