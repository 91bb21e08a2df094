"""Wall time and peak memory of a run, as the demo and benchmarks report them.

Peak memory is the rise of the machine's MemTotal - MemAvailable over the run, sampled every
0.5 s from /proc/meminfo: it counts every process (Ray workers, servers), not only this one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


def used_bytes() -> int:
    """MemTotal - MemAvailable from /proc/meminfo, in bytes (0 where /proc is absent)."""
    values = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, rest = line.split(":", 1)
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        return 0
    return values.get("MemTotal", 0) - values.get("MemAvailable", 0)


@dataclass
class RunMonitor:
    """Context manager sampling memory every `interval` s; read `.wall_s` and `.peak_rise_bytes` after."""

    interval: float = 0.5
    wall_s: float = 0.0
    baseline_bytes: int = 0
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _start: float = 0.0

    def __enter__(self) -> RunMonitor:
        self.baseline_bytes = self.peak_bytes = used_bytes()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, used_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, used_bytes())
        self.wall_s = time.perf_counter() - self._start

    @property
    def peak_rise_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)

    def summary(self) -> str:
        return (
            f"wall time {self.wall_s:.1f} s; peak memory {self.peak_rise_bytes / 2**30:.2f} GiB "
            f"(rise of MemTotal - MemAvailable over the run, sampled every {self.interval} s)"
        )
