"""The ``ovirt-cdrom`` command. Each subcommand lives in its own module of this package
and registers itself through ``register(subparsers, common)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ovirt_cdrom import __version__

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = ("simulate", "demo", "bench")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def parser() -> argparse.ArgumentParser:
    # The options every command takes, before or after the subcommand's name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log to stderr (-v: what each operation does, -vv: every port "
                             "call too)")
    top = argparse.ArgumentParser(
        prog="ovirt-cdrom", parents=[common],
        description="Atomic, crash-safe CD-ROM changes for VMs whose ISOs live on oVirt "
                    "block storage: the simulator, a demo, the benchmarks.",
        epilog="Docs: README.md, docs/simulator.md, docs/design.md.")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"ovirt_cdrom.cli.{name}").register(sub, common)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command is None:
        top.print_help()
        return 0
    verbose = getattr(args, "verbose", 0)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    args.verbose = verbose
    from ovirt_cdrom.container import ConfigError  # noqa: PLC0415 (keeps --help light)

    try:
        code: int = args.run(args)
    except ConfigError as err:
        print(f"ovirt-cdrom: invalid configuration: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
