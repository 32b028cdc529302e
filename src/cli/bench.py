"""``ovirt-cdrom bench``: the core's speed on the in-memory host, and (``--real``) its
overhead over the bare libvirt calls on a real QEMU VM."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ovirt_cdrom.bench.report import QUICK, Sizes, render, run

DESCRIPTION = """\
Measure the core on the in-memory host: insert, change and eject per second (2,000 VMs, 7
batches each), the port calls each flow makes, and how long recover_all takes on 1,000,
10,000 and 100,000 VMs (half of them with leftovers to clean up). With --real, also a change
on a real QEMU VM against the fewest libvirt calls a change needs (the overhead ratio).

It takes about a minute and up to 1 GB of memory (the 100,000-VM host); --real adds about
10 s. The figures and how to read them: docs/performance.md."""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="measure flow rates, calls per flow and recovery time (about a minute)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--real", action="store_true",
                   help="also measure a change on a real QEMU VM (needs libvirtd and root; "
                        "creates and removes its own VM and loop-backed volumes)")
    # Tiny sizes, for tests of the command itself (the figures mean nothing then).
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else Sizes()
    quiet = args.json

    def progress(msg: str) -> None:
        if not quiet:
            print(f"... {msg}", file=sys.stderr, flush=True)

    try:
        result = run(sizes, real=args.real, progress=progress)
    except ImportError as err:
        print(f"bench --real needs libvirt-python: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__module__ != "libvirt":
            raise
        print(f"bench --real needs a running libvirtd (as root): {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        print(render(result))
    return 0
