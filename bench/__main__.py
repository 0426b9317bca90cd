"""Run every benchmark, print one table, write `.fleetmail/bench.json`.

Each benchmark is an async function returning `Figure`s, each measured against a baseline
taken in the same run. The issues name the figures; benchmarks land with their issues.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float


Benchmark = Callable[[], Awaitable[list[Figure]]]
BENCHMARKS: list[Benchmark] = []


def table(figures: list[Figure]) -> str:
    if not figures:
        return "no benchmarks yet (they land with the token-service, mail-service and job-gateway issues)"
    width = max(len(f.name) for f in figures)
    rows = [f"{'name':<{width}}  {'value':>12}  unit      baseline"]
    rows += [
        f"{f.name:<{width}}  {f.value:>12.3f}  {f.unit:<8}  {f.baseline} = {f.baseline_value:.3f}"
        for f in figures
    ]
    return "\n".join(rows)


async def main() -> int:
    figures: list[Figure] = []
    for benchmark in BENCHMARKS:
        print(f"running {benchmark.__name__} …", flush=True)
        figures.extend(await benchmark())
    print(table(figures))
    out = Path(".fleetmail") / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
