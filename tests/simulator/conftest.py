"""Reports how many fault and crash cases the exhaustive test ran."""

from __future__ import annotations

from typing import Any

from . import test_exhaustive


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if test_exhaustive.CASES:
        terminalreporter.write_line(
            f"simulator exhaustive: {sum(test_exhaustive.CASES.values())} fault and crash "
            f"cases over {len(test_exhaustive.CASES)} flow/injection pairs, each point by "
            "number and by name")
