"""``ovirt-cdrom simulate FILE [--json] [--trace]``: run scenario files on an in-memory host.

Exit codes: 0 the scenarios ran (whatever their steps returned), 2 an invalid file (the
message names the field at fault), 1 an internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ovirt_cdrom.simulator import report, runner
from ovirt_cdrom.simulator.scenario import ScenarioError, load_text
from rich.console import Console

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID = 0, 1, 2


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="run scenario files (insert, eject, change, faults, crashes, "
        "recovery) on an in-memory host",
        description="Run the real core over an in-memory host set up by FILE (YAML or "
        "JSON, '-' for stdin), injecting the failures and crashes its steps ask for. "
        "See docs/simulator.md.")
    p.add_argument("file", metavar="FILE", help="scenario file (YAML or JSON), - for stdin")
    p.add_argument("--json", action="store_true", help="print the JSON report only")
    p.add_argument("--trace", action="store_true", help="show every port call of each step")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    quiet = not getattr(args, "verbose", 0)
    logger = logging.getLogger("ovirt_cdrom")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        return _run(args)
    finally:
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    def err(message: str) -> None:
        print(message, file=sys.stderr)

    runner.check_configuration()  # a bad OVIRT_CDROM_* value: exit 2, before any work

    try:
        if args.file == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            with open(args.file, encoding="utf-8") as f:
                text, source = f.read(), args.file
    except (OSError, UnicodeDecodeError) as exc:
        err(f"{args.file}: cannot read: {exc}")
        return EXIT_INVALID
    try:
        scenarios, many = load_text(text, source)
    except ScenarioError as exc:
        err(f"{source}: invalid scenario: {exc}")
        return EXIT_INVALID
    apps = runner.AppCache()
    try:
        runs = [runner.run(s, apps) for s in scenarios]
        if args.json:
            reports = [report.scenario_json(r, args.trace) for r in runs]
            json.dump(reports if many else reports[0], sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            console = Console()
            for r in runs:
                report.render(console, r, args.trace)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        err(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
    return EXIT_OK
