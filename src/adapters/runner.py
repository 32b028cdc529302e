"""The one seam through which adapters run host commands.

Adapters build argv lists and hand them to a :class:`CommandRunner`; they never build a
shell string. :class:`SubprocessRunner` runs them for real; :class:`RecordingRunner` records
each argv and answers with scripted results, so command lines and error mapping can be
tested without the command.
"""

from __future__ import annotations

import abc
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

Matcher = Callable[[Sequence[str]], bool]


@dataclass(frozen=True, slots=True)
class CompletedCommand:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def stderr_lines(self) -> list[str]:
        """Stderr split into stripped, non-empty lines."""
        return [line.strip() for line in self.stderr.splitlines() if line.strip()]


class CommandError(Exception):
    """The command could not be run at all (not found, not executable, timed out)."""

    def __init__(self, argv: Sequence[str], reason: str) -> None:
        super().__init__(f"{' '.join(argv)}: {reason}")
        self.argv = tuple(argv)
        self.reason = reason


class CommandRunner(abc.ABC):
    """Runs one command given as an argv list and returns what it did."""

    @abc.abstractmethod
    def run(self, argv: Sequence[str]) -> CompletedCommand:
        """Run ``argv``; a non-zero exit is a result, not an exception.

        Raises :class:`CommandError` when the command cannot be started or times out.
        """


class SubprocessRunner(CommandRunner):
    """Runs commands with :mod:`subprocess`: no shell, no stdin, a timeout, C locale.

    The C locale keeps messages in English, since adapters recognise some of them.
    """

    def __init__(self, timeout: float = 120.0, env: Mapping[str, str] | None = None) -> None:
        self.timeout = timeout
        self.env = {**os.environ, "LC_ALL": "C", "LANG": "C", **(env or {})}

    def run(self, argv: Sequence[str]) -> CompletedCommand:
        args = [str(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
        log.debug("running %s", args)
        try:
            proc = subprocess.run(  # an argv list, never a shell
                args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                errors="replace", timeout=self.timeout, env=self.env, check=False)
        except subprocess.TimeoutExpired:
            raise CommandError(args, f"timed out after {self.timeout:g}s") from None
        except OSError as e:
            raise CommandError(args, str(e)) from e
        result = CompletedCommand(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if not result.ok:
            log.debug("%s failed rc=%d: %s", args[:2], proc.returncode, proc.stderr.strip())
        return result


@dataclass(slots=True)
class _Answer:
    matcher: Matcher
    returncode: int
    stdout: str
    stderr: str
    times: int | None


class RecordingRunner(CommandRunner):
    """Records every argv and answers with scripted results.

    ``answer(...)`` queues a result for the next command that ``when`` matches (a
    predicate over argv, a word that must appear in argv, or None for any command);
    ``times=None`` keeps answering. Commands nothing matches succeed with empty output,
    unless the runner is ``strict``, where they raise :class:`AssertionError`.
    Answers are consulted in the order they were scripted.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.calls: list[tuple[str, ...]] = []
        self._answers: list[_Answer] = []
        self._lock = threading.Lock()

    def answer(self, returncode: int = 0, stdout: str = "", stderr: str = "",
               when: Matcher | str | None = None, times: int | None = 1) -> RecordingRunner:
        matcher: Matcher
        if when is None:
            matcher = _any
        elif isinstance(when, str):
            word = when
            matcher = lambda argv: word in argv  # noqa: E731
        else:
            matcher = when
        with self._lock:
            self._answers.append(_Answer(matcher, returncode, stdout, stderr, times))
        return self

    def run(self, argv: Sequence[str]) -> CompletedCommand:
        args = tuple(str(a) for a in argv)
        with self._lock:
            self.calls.append(args)
            for answer in self._answers:
                if answer.matcher(args):
                    if answer.times is not None:
                        answer.times -= 1
                        if answer.times <= 0:
                            self._answers.remove(answer)
                    return CompletedCommand(args, answer.returncode, answer.stdout,
                                            answer.stderr)
        if self.strict:
            raise AssertionError(f"unexpected command: {args}")
        return CompletedCommand(args, 0, "", "")

    def commands(self, word: str) -> list[tuple[str, ...]]:
        """The recorded argvs that contain ``word`` (``"lvchange"``)."""
        return [c for c in self.calls if word in c]


def _any(argv: Sequence[str]) -> bool:
    return True
