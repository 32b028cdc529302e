"""Collects the figures the reliability tests report (issue 5's closing note)."""

from __future__ import annotations

from typing import Any

from .harness import FIGURES, FIGURES_FILE, write_figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    write_figures()
    terminalreporter.section("reliability figures")
    for name, count in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {count}")
    terminalreporter.write_line(f"(also written to {FIGURES_FILE})")
