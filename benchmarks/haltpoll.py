"""P2 with the guest kernel's halt polling off and on, alternated.

``python -m benchmarks.haltpoll [--backends a,b] [--rounds 3] [--reps 8]``
(as root, on a KVM guest whose ``cpuidle`` driver is ``haltpoll``) runs
``benchmarks.drivers``' P2 on each backend with
``/sys/module/haltpoll/parameters/guest_halt_poll_ns`` at 0 (an idle vCPU
halts at once; this machine's boot setting) and at 200,000 (the kernel's
default: an idle vCPU polls for up to 200 us before it halts), rounds
alternated, and prints asynchdb's ratio to the naive ``ThreadPoolExecutor(1)``
with the three medians.  The knob is put back to the value it had, whatever
happens.  It is a diagnostic: it tells whether P2's ratio comes from what an
idle vCPU costs to wake or from the CPU asynchdb spends (see
``docs/round-trip.md``).  Writes nothing; nothing here asserts a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # python benchmarks/haltpoll.py: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
from typing import Any, Optional

from benchmarks import drivers

KNOB = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
SETTINGS = (0, 200_000)


def _line(backend: str, key: str, query: dict[str, Any]) -> str:
    comp = query["comparisons"][0]
    modes = query["modes"]
    medians = ", ".join(f"{name} {m['median_ns'] / 1000:.1f} us" for name, m in modes.items())
    per_rep = comp.get("per_rep", {})
    return (f"{backend:18s} {key:8s} {comp['ratio']:.3f}x "
            f"(per repetition {per_rep.get('p25')}-{per_rep.get('p75')}); {medians}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="psycopg,pyodbc-postgresql,pyodbc-mariadb,"
                                          "duckdb,mysqlclient")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=8)
    args = ap.parse_args(argv)
    if not KNOB.exists():
        print(f"{KNOB} is not here: this is not a KVM guest with the haltpoll "
              "cpuidle driver", file=sys.stderr)
        return 2
    wanted = args.backends.split(",")
    targets = [t for t in drivers.TARGETS if t.backend.name in wanted]
    unknown = set(wanted) - {t.backend.name for t in targets}
    if unknown:
        print(f"unknown backends: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    sizes = drivers.Sizes(reps=args.reps)
    before = KNOB.read_text().strip()
    try:
        for rnd in range(1, args.rounds + 1):
            for ns in SETTINGS:
                KNOB.write_text(str(ns))
                print(f"== round {rnd}, guest_halt_poll_ns={KNOB.read_text().strip()}",
                      flush=True)
                for t in targets:
                    reason = drivers._unavailable(t)
                    if reason is not None:
                        print(f"{t.backend.name}: skipped ({reason})", flush=True)
                        continue
                    result = drivers.run_p2(t, sizes)
                    for key, query in result["queries"].items():
                        print(_line(t.backend.name, key, query), flush=True)
    finally:
        KNOB.write_text(before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
