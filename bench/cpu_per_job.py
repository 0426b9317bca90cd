"""Where a job's CPU goes, process by process, with telemetry off, on, or on with nothing
sampled: the diagnostic behind `telemetry.throughput_ratio` (not part of `make bench`).

    .venv/bin/python -m bench.cpu_per_job off,on,s0,on,off

Each mode named is one round of jobs end to end on one embedded stack, run as
bench/telemetry.py runs its rounds; for each round it prints jobs per second and the CPU per job
of every process of the stack and of this one (the load and the collector), read from /proc,
with the part of it spent outside the process's main thread ("threads": in a service, the span
exporter, the metrics endpoint and asyncio's worker threads; in nats-server and the database,
nearly everything).
On two cores the stack is CPU-bound, so CPU per job is what decides the throughput; compare
modes in the same run (the embedded database's writes grow costlier as the run goes).

Modes: `off`; `on` (as the benchmark: spans over OTLP, metrics scraped); `s0` (on, sampling 0:
middleware, propagation and metrics, no span recorded); `nometrics` (on, no metrics).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
from fleetmail_devkit.otlp import OtlpSink
from fleetmail_devkit.stack import Stack

from . import telemetry
from .mail import e2e_rate
from .stack import running_stack

MODES = {
    "off": (False, {}),
    "on": (True, {}),
    "s0": (True, {"FLEETMAIL_OTEL_SAMPLING_RATIO": "0"}),
    "nometrics": (True, {"FLEETMAIL_METRICS_PORT": "0", "FLEETMAIL_OTEL_METRICS": "none"}),
}
VARIED = {key for _, extra in MODES.values() for key in extra}


def cpu_s(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def process_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds of a process's main thread, and of all its threads (ended ones included):
    the difference is its background threads' (the span exporter's, the metrics endpoint's)."""
    return cpu_s(Path(f"/proc/{pid}/task/{pid}/stat")), cpu_s(Path(f"/proc/{pid}/stat"))


def ms_per_job(before: tuple[float, float], after: tuple[float, float], jobs: int) -> tuple[float, float]:
    """Milliseconds of CPU per job between two `process_cpu_s` readings: (main thread, process)."""
    return 1000 * (after[0] - before[0]) / jobs, 1000 * (after[1] - before[1]) / jobs


def shown(name: str, main: float, total: float) -> str:
    """`job-gateway 3.56 (threads 0.21)`: the process's figure, and its other threads' share
    when it is measurable."""
    threads = total - main
    return f"{name} {total:.2f}" + (f" (threads {threads:.2f})" if threads >= 0.005 else "")


async def switch(stack: Stack, mode: str, sink: OtlpSink) -> None:
    on, extra = MODES[mode]
    for part in [p for p in stack.parts if p.name.startswith(telemetry.SERVICES)]:
        for key in VARIED:
            part.env.pop(key, None)
        if on:
            part.env.update(extra)
    await telemetry.switch(stack, on, sink)  # restarts the services with the env above


async def main(modes: list[str]) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    jobs = telemetry.DEVICES * telemetry.PER_DEVICE
    interval_s = telemetry.deployed_scrape_interval_s()
    sink = OtlpSink(keep=False).start()
    try:
        async with running_stack() as stack:
            async with httpx.AsyncClient(verify=stack.ssl_context(), trust_env=False, timeout=60) as http:
                for mode in modes:
                    await switch(stack, mode, sink)
                    async with telemetry.round_ready(stack, http, MODES[mode][0], interval_s) as devices:
                        pids = {p.name: p.process.pid for p in stack.parts if p.process is not None}
                        pids["benchmark"] = os.getpid()
                        before = {name: process_cpu_s(pid) for name, pid in pids.items()}
                        rate = await e2e_rate(stack, http, devices, telemetry.PER_DEVICE)
                        after = {name: process_cpu_s(pid) for name, pid in pids.items()}
                    per_job = {name: ms_per_job(before[name], after[name], jobs) for name in pids}
                    ranked = sorted(per_job.items(), key=lambda kv: -kv[1][1])
                    total = sum(process for _, process in per_job.values())
                    print(
                        f"{mode:<10} {rate:6.1f} jobs/s  {total:6.2f} ms CPU/job  "
                        + "  ".join(shown(name, *figures) for name, figures in ranked),
                        flush=True,
                    )
                await telemetry.switch(stack, False, sink)
    finally:
        sink.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(",") if len(sys.argv) > 1 else ["off", "on", "s0", "on", "off"]))
