"""The ``ovirt-cdrom`` command. Each subcommand lives in its own module of this package
and registers itself through ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = ("simulate", "demo", "bench")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ovirt-cdrom",
        description="Atomic, crash-safe CD-ROM changes for ISOs on oVirt block storage.")
    top.add_argument("-v", "--verbose", action="count", default=0,
                     help="log to stderr (-v: info, -vv: debug)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"ovirt_cdrom.cli.{name}").register(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = {0: logging.ERROR, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from ovirt_cdrom.container import ConfigError  # noqa: PLC0415 (keeps --help light)

    try:
        code: int = args.run(args)
    except ConfigError as err:
        print(f"ovirt-cdrom: invalid configuration: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
