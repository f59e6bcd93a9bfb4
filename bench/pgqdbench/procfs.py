"""What /proc says about a process: CPU time, memory, open descriptors (see proc(5))."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [i] is field i + 3 of proc(5)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def proc_stat(pid: int) -> tuple[int, float]:
    """(ppid, CPU seconds of the process and its reaped children)."""
    rest = _stat_fields(pid)
    # 4 ppid, 14 utime, 15 stime, 16 cutime, 17 cstime
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return int(rest[1]), ticks / CLK_TCK


def own_cpu(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    rest = _stat_fields(pid)
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the whole server: the postmaster with its reaped children
    (cutime + cstime: every backend that has exited) plus its live children."""
    total = proc_stat(postmaster)[1]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid, cpu = proc_stat(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            total += cpu
    return total


def _kb_field(path: str, name: str) -> float:
    """The `name:  N kB` line of a /proc file, in MB; NaN when absent."""
    with open(path) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size over the process' life."""
    return _kb_field(f"/proc/{pid}/status", "VmHWM")


def vm_rss_mb(pid: int) -> float:
    """Resident set size now."""
    return _kb_field(f"/proc/{pid}/status", "VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pss_mb(pids: list[int], field: str = "Pss") -> float:
    """Sum of a proportional-set-size field of these processes' smaps_rollup, MB. `Pss`:
    private pages plus each shared page divided by the number of processes mapping it;
    `Pss_Anon`: the anonymous part only (heap, caches, plans: what exiting would free),
    without the share of shared buffers and files. A process that has exited meanwhile
    counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            pss = _kb_field(f"/proc/{pid}/smaps_rollup", field)
        except OSError:
            continue
        if pss == pss:  # not NaN
            total += pss
    return total


def on_cpu_ns(pid: int) -> int:
    """Nanoseconds the process' main thread has run on a CPU (the first field of
    /proc/PID/schedstat: the scheduler's own count, exact, where utime and stime come in
    clock ticks). Up to date while the thread sleeps; for a running one, only as of its
    last scheduler update."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])
