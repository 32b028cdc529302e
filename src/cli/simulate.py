"""``ovirt-cdrom simulate FILE [--json] [--trace]``: run scenario files on an in-memory host.

Exit codes: 0 the scenarios ran (whatever their steps returned), 2 an invalid file (the
message names the field at fault) or configuration, 1 an internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, BinaryIO

from ovirt_cdrom.simulator import report, runner
from ovirt_cdrom.simulator.scenario import MAX_NODES, ScenarioError, load_text
from rich.console import Console

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID = 0, 1, 2
MAX_BYTES = 16 * 1024 * 1024  # a scenario file larger than this is refused (--max-bytes)

EPILOG = """\
exit status:
  0  the scenarios ran (whatever their steps returned: see each step's "ok")
  1  an internal error (a bug: please report it, with the file)
  2  the file is invalid or cannot be read (the message names the field at fault), or an
     OVIRT_CDROM_* setting is invalid

examples (in the repository's examples/ folder; each file says what it shows):
  ovirt-cdrom simulate examples/change-crash-before-media-change.yaml
  ovirt-cdrom simulate --trace examples/change.yaml
  ovirt-cdrom simulate --json examples/recovery-rows.yaml
  cat scenario.yaml | ovirt-cdrom simulate -

The scenario format, the report and the named call points: docs/simulator.md.
The design, its flows and recovery cases (change.3, eject.2...): docs/design.md.
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "simulate", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run scenario files (insert, eject, change, faults, crashes, recovery) on an "
             "in-memory host",
        description="Run the real core over an in-memory host set up by FILE (YAML or "
                    "JSON, '-' for stdin), injecting the failures and crashes its steps ask "
                    "for, and report what the host did and ended up with.",
        epilog=EPILOG)
    p.add_argument("file", metavar="FILE", help="scenario file (YAML or JSON), - for stdin")
    p.add_argument("--json", action="store_true", help="print the JSON report only")
    p.add_argument("--trace", action="store_true",
                   help="show every port call of each step, and the host after each step")
    p.add_argument("--max-bytes", type=int, default=MAX_BYTES, metavar="N",
                   help=f"refuse a file larger than N bytes (default {MAX_BYTES})")
    p.add_argument("--max-values", type=int, default=MAX_NODES, metavar="N",
                   help=f"refuse a document of more than N values once YAML aliases are "
                        f"expanded (default {MAX_NODES})")
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


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def read_bounded(stream: BinaryIO, limit: int, source: str) -> str:
    """At most ``limit`` bytes of UTF-8 text from ``stream``; ScenarioError otherwise (the
    same message for a file and for stdin)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ScenarioError("", f"{source} is larger than {limit} bytes (--max-bytes "
                                "raises the limit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError("", f"{source} is not UTF-8 text (byte {exc.start}: "
                                f"{exc.reason})") from None


def _run(args: argparse.Namespace) -> int:
    runner.check_configuration()  # a bad OVIRT_CDROM_* value: exit 2, before any work
    source = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = read_bounded(sys.stdin.buffer, args.max_bytes, source)
        else:
            with open(args.file, "rb") as f:
                text = read_bounded(f, args.max_bytes, source)
        scenarios, many = load_text(text, source, max_values=args.max_values)
    except OSError as exc:
        _err(f"{args.file}: cannot read: {exc.strerror or exc}")
        return EXIT_INVALID
    except ScenarioError as exc:
        _err(f"{source}: invalid scenario: {exc}")
        return EXIT_INVALID
    apps = runner.AppCache()
    progress = report.Progress(len(scenarios), enabled=many and sys.stderr.isatty())
    try:
        runs = []
        for scenario in scenarios:
            runs.append(runner.run(scenario, apps, record_after=args.trace))
            progress.advance(scenario.name)
        progress.done()
        if args.json:
            reports = [report.scenario_json(r, args.trace) for r in runs]
            json.dump(reports if many else reports[0], sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            console = Console()
            for r in runs:
                report.render(console, r, args.trace)
            if many:
                console.print(report.summary(runs))
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        _err(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
    return EXIT_OK
