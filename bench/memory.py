"""Memory of one piece of work in a service process: its resident set sampled from just before
the work to its end, from a thread (the event loop is busy with the work itself).

The process's lifetime peak (VmHWM) is not used: after thousands of jobs it says nothing about
the one being measured."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType

from fleetmail_devkit.stack import Part

INTERVAL_S = 0.002


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"process {pid} reports no VmRSS")


class RssSampler:
    """`with RssSampler(part) as rss: <the work>` then `rss.growth_bytes`: the highest resident
    set seen during the work, less the one just before it."""

    def __init__(self, part: Part) -> None:
        assert part.process is not None, f"{part.name} is not running"
        self.pid = part.process.pid
        self.before_kb = 0
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            self.samples += 1
            time.sleep(INTERVAL_S)

    def __enter__(self) -> RssSampler:
        self.before_kb = self.peak_kb = rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_kb(self.pid))

    @property
    def growth_bytes(self) -> int:
        return max(self.peak_kb - self.before_kb, 0) * 1024
