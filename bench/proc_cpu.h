/* proc_cpu.h: the CPU time and memory another process has used, from
 * /proc: how the load generators report a server's own CPU per request
 * and its resident memory under load, while sharing the machine with it. */
#ifndef PKID_BENCH_PROC_CPU_H
#define PKID_BENCH_PROC_CPU_H

/* bench_proc_cpu_s returns utime + stime of |pid| in seconds, plus what
 * its reaped children used (cutime + cstime) and, with |live_children|,
 * what its running children have used (one level: openssl ocsp -multi
 * forks workers). -1 when /proc cannot be read. */
double bench_proc_cpu_s(int pid, int live_children);

/* bench_proc_rss_kb reads VmRSS (now) and VmHWM (the peak so far) of |pid|
 * from /proc/PID/status, in KiB; 0 when it cannot be read. */
int bench_proc_rss_kb(int pid, long *out_rss, long *out_hwm);

#endif /* PKID_BENCH_PROC_CPU_H */
