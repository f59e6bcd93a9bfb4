"""The daemons under test: their pgqd.ini, start, liveness, stop."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from .cluster import BenchError, Cluster, log


def write_ini(path: Path, cluster: Cluster, overrides: dict[str, str]) -> None:
    """pgqd.ini for `cluster`: base_connstr, no syslog, then the scenario's overrides;
    everything else at the daemon's defaults."""
    lines = [
        "[pgqd]",
        f"base_connstr = host={cluster.dir} port={cluster.port} user=postgres",
        "syslog = 0",
        *(f"{key} = {value}" for key, value in overrides.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


class Daemon:
    """One daemon process, started directly (its pid is the daemon's pid)."""

    live: list["Daemon"] = []

    def __init__(self, binary: str, ini: Path, logfile: Path):
        self.logfile = logfile
        # bench/run.sh's PGQD_REFERENCE is no setting: our pgqd would warn about it.
        env = {k: v for k, v in os.environ.items() if k != "PGQD_REFERENCE"}
        with open(logfile, "w") as out:
            self.proc = subprocess.Popen([binary, str(ini)], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ini.parent, env=env)
        Daemon.live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGINT (pgqd's graceful shutdown), SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"daemon {self.pid} ignored SIGINT for 15 s, killing it")
                self.proc.kill()
                self.proc.wait()
        if self in Daemon.live:
            Daemon.live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for d in list(cls.live):
            d.stop()
