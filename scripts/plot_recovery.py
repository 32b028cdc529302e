#!/usr/bin/env python3
"""Plot recovery time against VM count on the in-memory host: docs/recovery-scaling.png.

Measures ``recover_all`` after a restart with half the VMs holding an interrupted flow
(``ovirt_cdrom.bench.memory.recovery_seconds``), with the garbage collector running and
paused, and draws both with a straight line through the origin fitted to the former.
Needs matplotlib (the ``dev`` extra). The figures go beside the PNG as JSON.

    python3 scripts/plot_recovery.py [--sizes 1000,10000,100000] [--out docs/recovery-scaling.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from ovirt_cdrom.bench.memory import recovery_seconds

DEFAULT_SIZES = (1_000, 5_000, 10_000, 25_000, 50_000, 100_000)


def measure(sizes: list[int]) -> dict[str, list[float]]:
    with_gc, without_gc = [], []
    for vms in sizes:
        runs = 3 if vms <= 10_000 else 1
        with_gc.append(statistics.median(recovery_seconds(vms) for _ in range(runs)))
        without_gc.append(recovery_seconds(vms, collector=False))
        print(f"{vms:>7} VMs: {with_gc[-1]:.3f} s, collector paused {without_gc[-1]:.3f} s",
              flush=True)
    return {"vms": [float(v) for v in sizes], "seconds": with_gc,
            "seconds_collector_paused": without_gc}


def plot(data: dict[str, list[float]], out: Path, load: tuple[float, float]) -> None:
    vms, secs, paused = data["vms"], data["seconds"], data["seconds_collector_paused"]
    slope = sum(v * s for v, s in zip(vms, secs, strict=True)) / sum(v * v for v in vms)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(vms, secs, "o-", label="recover_all (collector running)")
    ax.plot(vms, paused, "s--", label="recover_all (collector paused)")
    ax.plot([0, max(vms)], [0, slope * max(vms)], ":", color="grey",
            label=f"linear fit: {slope * 1e6:.0f} us per VM")
    ax.plot([10_000], [1.0], "rv", label="target: at most 1 s for 10,000 VMs")
    ax.set_xlabel("VMs on the host (half with an interrupted flow)")
    ax.set_ylabel("seconds")
    ax.set_title("Recovery after a restart, in-memory host, one thread\n"
                 f"load average {load[0]:.2f} before, {load[1]:.2f} after", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "docs"
                        / "recovery-scaling.png")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    data = measure([int(s) for s in args.sizes.split(",")])
    after = os.getloadavg()[0]
    plot(data, args.out, (before, after))
    args.out.with_suffix(".json").write_text(json.dumps(
        {**data, "load_avg_before": before, "load_avg_after": after}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
