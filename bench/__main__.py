"""Run every benchmark on one embedded stack, print one table, write `.fleetmail/bench.json`.

`python -m bench NAME …` runs only the groups named (e.g. `python -m bench smtp-memory`) and
replaces only their figures in `.fleetmail/bench.json`.

Every figure comes with a baseline measured in the same run on this machine, except where
the baseline is a constant of the benchmark (the size of the upload it measures, the number
of callers it starts): those say "(constant)" in their baseline's name.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import attachments, gateway, mail, notifier, overview, scale, sweep, telemetry, token, transports
from .figures import Figure
from .stack import running_stack

# job-gateway late: it stops mail-service to measure intake alone. The overview last: the
# thousand tenants it writes stay in the stores.
BENCHMARKS = [
    ("token-service", token.run),
    ("mail-service", mail.run),
    ("transports", transports.run),
    ("notifier", notifier.run),
    ("telemetry", telemetry.run),
    ("scale-out", scale.run),
    ("attachments", attachments.run),
    ("attachment-sweep", sweep.run),
    ("smtp-memory", gateway.run_smtp_memory),
    ("job-gateway", gateway.run),
    ("overview", overview.run),
]


def table(figures: list[Figure]) -> str:
    width = max([len(f.name) for f in figures] + [4])
    rows = [f"{'name':<{width}}  {'value':>10}  {'unit':<6}  baseline"]
    rows += [
        f"{f.name:<{width}}  {f.value:>10.3f}  {f.unit:<6}  {f.baseline} = {f.baseline_value:.3f}"
        for f in figures
    ]
    return "\n".join(rows)


async def main(names: list[str]) -> int:
    unknown = set(names) - {name for name, _ in BENCHMARKS}
    if unknown:
        print(
            f"no benchmark group {', '.join(sorted(unknown))}; groups: {', '.join(n for n, _ in BENCHMARKS)}"
        )
        return 2
    figures: list[Figure] = []
    print("starting the embedded stack …", flush=True)
    async with running_stack() as stack:
        for name, benchmark in BENCHMARKS:
            if names and name not in names:
                continue
            print(f"running {name} benchmarks …", flush=True)
            figures.extend(await benchmark(stack))
    print(table(figures))
    out = Path(".fleetmail") / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = [asdict(f) for f in figures]
    if names and out.exists():  # a part of the run: the other groups' last figures stay
        measured = {entry["name"] for entry in entries}
        entries = [e for e in json.loads(out.read_text()) if e["name"] not in measured] + entries
    out.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
