#include "bench/proc_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* one_cpu_s reads fields 14-17 (utime, stime, cutime, cstime) of
 * /proc/PID/stat, in seconds. */
static double one_cpu_s(int pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (p == NULL) return -1;
  unsigned long long ticks = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p + 1, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field >= 14 && field <= 17) ticks += strtoull(tok, NULL, 10);
    if (field == 17) break;
  }
  return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

double bench_proc_cpu_s(int pid, int live_children) {
  double total = one_cpu_s(pid);
  if (total < 0 || !live_children) return total;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return total;
  int child;
  while (fscanf(f, "%d", &child) == 1) {
    double c = one_cpu_s(child);
    if (c > 0) total += c;
  }
  fclose(f);
  return total;
}

int bench_proc_rss_kb(int pid, long *out_rss, long *out_hwm) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  *out_rss = *out_hwm = -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) *out_rss = strtol(line + 6, NULL, 10);
    if (strncmp(line, "VmHWM:", 6) == 0) *out_hwm = strtol(line + 6, NULL, 10);
  }
  fclose(f);
  return *out_rss >= 0 && *out_hwm >= 0;
}
