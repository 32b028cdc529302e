"""The benchmark run: sizes, the public JSON report, and its readable form.

The keys of :func:`run`'s result are a public contract (``docs/performance.md``):
``memory_change_per_s``, ``memory_insert_per_s``, ``memory_eject_per_s``,
``memory_recover_10k_s``, ``calls_per_flow`` and, with ``real``, ``libvirt_change_ms``,
``libvirt_bare_ms`` and ``libvirt_overhead_ratio``. Other keys are extras (with ``real``:
``libvirt_only_ms`` and ``storage_ms``, the two parts of the bare change).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ovirt_cdrom.bench import memory

TARGETS = {
    "memory_change_per_s": (">=", 20_000.0),
    "memory_recover_10k_s": ("<=", 1.0),
    "libvirt_overhead_ratio": ("<=", 1.10),
}
RECOVER_KEY_VMS = 10_000


@dataclass(frozen=True, slots=True)
class Sizes:
    flow_vms: int = 2_000               # VMs per timed batch of flows
    flow_rounds: int = 7                # batches per flow kind
    recovery: tuple[tuple[int, int], ...] = ((1_000, 5), (10_000, 5), (100_000, 1))  # (VMs, runs)
    real_changes: int = 30              # changes (and bare sequences) per real round
    real_rounds: int = 3


QUICK = Sizes(flow_vms=50, flow_rounds=2, recovery=((100, 1), (10_000, 1)),
              real_changes=4, real_rounds=1)


def _spread(samples: list[float] | tuple[float, ...]) -> dict[str, float | int]:
    return {"median": memory._median(samples), "min": min(samples), "max": max(samples),
            "runs": len(samples)}


def run(sizes: Sizes = Sizes(), real: bool = False,
        progress: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Measure, and return the report (JSON-ready)."""
    if RECOVER_KEY_VMS not in {vms for vms, _ in sizes.recovery}:
        raise ValueError(f"recovery sizes must include {RECOVER_KEY_VMS} VMs")
    started = time.time()
    load_before = os.getloadavg()
    progress("calls per flow")
    calls = memory.calls_per_flow()
    progress(f"flow rates: {sizes.flow_rounds} rounds over {sizes.flow_vms} VMs")
    rates = memory.flow_rates(sizes.flow_vms, sizes.flow_rounds)
    recovery: dict[str, dict[str, float | int]] = {}
    recovery_nogc: dict[str, float] = {}
    for vms, runs in sizes.recovery:
        progress(f"recovery of {vms} VMs, {runs} run(s), and one without the collector")
        recovery[str(vms)] = _spread([memory.recovery_seconds(vms) for _ in range(runs)])
        recovery_nogc[str(vms)] = memory.recovery_seconds(vms, collector=False)
    result: dict[str, Any] = {
        "memory_change_per_s": rates["change"].median,
        "memory_insert_per_s": rates["insert"].median,
        "memory_eject_per_s": rates["eject"].median,
        "memory_recover_10k_s": recovery[str(RECOVER_KEY_VMS)]["median"],
        "calls_per_flow": {k: {f: calls[k][f] for f in ("metadata_writes", "media_updates",
                                                          "reads")}
                           for k in memory.FLOWS},
        # Extras.
        "memory_flow_rates": {k: _spread(r.samples) for k, r in rates.items()},
        "memory_recover_s": recovery,
        "memory_recover_nogc_s": recovery_nogc,
        "calls_per_flow_trace": {k: calls[k]["calls"] for k in memory.FLOWS},
    }
    if real:
        from ovirt_cdrom.bench import real as real_bench  # noqa: PLC0415 (needs libvirt-python)

        progress(f"libvirt: {sizes.real_rounds} round(s) of {sizes.real_changes} changes")
        result.update(real_bench.measure(sizes.real_changes, sizes.real_rounds, progress))
    result["machine"] = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
    }
    result["sizes"] = asdict(sizes)
    result["targets_met"] = {key: _met(result[key], op, bound)
                             for key, (op, bound) in TARGETS.items() if key in result}
    return result


def _met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def render(result: dict[str, Any]) -> str:
    """The report for a reader: medians, the machine's noise (min and max), the targets."""
    lines = ["In-memory host, one thread (median of runs; min..max is the machine's noise)"]
    for kind in ("insert", "change", "eject"):
        r = result["memory_flow_rates"][kind]
        lines.append(f"  {kind:<7} {r['median']:>9,.0f} flows/s   "
                     f"({r['min']:,.0f}..{r['max']:,.0f}, {r['runs']} runs)")
    lines.append("  recovery after a restart, half the VMs with an interrupted flow:")
    for vms, r in result["memory_recover_s"].items():
        per_vm = r["median"] / int(vms) * 1e6
        nogc = result["memory_recover_nogc_s"][vms]
        lines.append(f"  {int(vms):>9,} VMs {r['median']:>8.3f} s   {per_vm:6.1f} us/VM   "
                     f"({r['min']:.3f}..{r['max']:.3f}, {r['runs']} runs);  collector paused: "
                     f"{nogc:.3f} s, {nogc / int(vms) * 1e6:.1f} us/VM")
    lines.append("Port calls per successful flow (counted as made):")
    for kind, c in result["calls_per_flow"].items():
        lines.append(f"  {kind:<7} metadata writes {c['metadata_writes']}, media updates "
                     f"{c['media_updates']}, reads {c['reads']}:  "
                     + " ".join(result["calls_per_flow_trace"][kind]))
    if "libvirt_change_ms" in result:
        lv = result["libvirt"]

        def spread(key: str) -> str:
            return f"({lv[key]['min']:.2f}..{lv[key]['max']:.2f})"

        lines.append(f"Real QEMU VM through libvirt ({lv['changes_per_round']} changes per round, "
                     f"{lv['rounds']} rounds, interleaved with as many bare changes):")
        lines.append(f"  change   {result['libvirt_change_ms']:8.2f} ms  {spread('change_ms')}"
                     "  through the core: "
                     + ", ".join(f"{n} {c}" for c, n in lv["change_calls"].items())
                     + ", prepare, teardown")
        lines.append(f"  bare     {result['libvirt_bare_ms']:8.2f} ms  {spread('bare_ms')}"
                     "  the fewest calls a change needs, issued directly: "
                     + ", ".join(lv["bare_calls"]))
        lines.append(f"    of which libvirt calls {result['libvirt_only_ms']:6.2f} ms  "
                     f"{spread('libvirt_only_ms')},  storage (loop prepare + teardown) "
                     f"{result['storage_ms']:.2f} ms  {spread('storage_ms')}")
        sp = lv["change_split_ms"]
        lines.append(f"  where a change's time goes ({lv['changes_per_round']} more changes, every "
                     f"call timed): libvirt calls {sp['libvirt']:.2f} ms, storage "
                     f"{sp['storage']:.2f} ms, the core and adapters' own work {sp['core']:.2f} ms "
                     f"(of {sp['total']:.2f})")
        lines.append(f"  overhead {result['libvirt_overhead_ratio']:8.3f} x  "
                     f"(per round: {', '.join(f'{x:.3f}' for x in lv['ratio_per_round'])}); "
                     f"the core costs {result['libvirt_change_ms'] - result['libvirt_bare_ms']:.2f}"
                     " ms more than the bare change")
    m = result["machine"]
    lines.append(f"Machine: {m['cpus']} CPUs, Python {m['python']}, load average "
                 f"{m['load_avg_before'][0]} before, {m['load_avg_after'][0]} after, "
                 f"{m['seconds']} s")
    for key, met in result["targets_met"].items():
        op, bound = TARGETS[key]
        lines.append(f"Target {key} {op} {bound:g}: {'met' if met else 'NOT met'} "
                     f"({result[key]:,.3f})")
    return "\n".join(lines)
