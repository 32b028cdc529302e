"""One libvirt connection per process: opened lazily, reopened when libvirtd restarted.

Both libvirt adapters share one :class:`LibvirtConnection`. Every call goes through
:meth:`LibvirtConnection.call`, which hands the function a live ``virConnect`` and, when
the call fails because the connection died (libvirtd restarted, the socket closed), opens
a new connection and runs the function once more. Every function passed in must therefore
be safe to run twice: ours are (a forced media change, a whole-block metadata write and
the reads are idempotent). Errors are mapped to the domain's typed errors in one place,
:func:`map_error`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt  # type: ignore[import-untyped, unused-ignore]
from ovirt_cdrom.domain.errors import (
    CdromError,
    HypervisorError,
    HypervisorTimeout,
    NoSuchVM,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_URI = "qemu:///system"

# Errors after which the connection may be dead; isAlive() decides.
_CONNECTION_ERRORS = frozenset({
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_INTERNAL_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
})
# The call may have taken effect without answering.
_TIMEOUT_ERRORS = frozenset({
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
})

LibvirtError: type[Exception] = libvirt.libvirtError


def error_code(err: Exception) -> int | None:
    code: Any = err.get_error_code() if isinstance(err, libvirt.libvirtError) else None
    return int(code) if code is not None else None


def map_error(err: Exception, what: str, error: type[CdromError] = HypervisorError,
              vm: object = None) -> CdromError:
    """A libvirt error as the domain's typed error (``error`` for plain refusals)."""
    code = error_code(err)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NoSuchVM(str(vm) if vm is not None else str(err))
    if code in _TIMEOUT_ERRORS:
        return HypervisorTimeout(f"{what}: {err}")
    return error(f"{what}: {err}")


def _silence(_ctx: object, _err: object) -> None:
    """libvirt's error callback: errors reach us as exceptions, not as stderr noise."""


class LibvirtConnection:
    """A lazily opened, self-healing ``virConnect`` shared by the libvirt adapters."""

    def __init__(self, uri: str = DEFAULT_URI,
                 opener: Callable[[str], Any] | None = None) -> None:
        self.uri = uri
        self._opener: Callable[[str], Any] = opener or libvirt.open
        self._lock = threading.Lock()
        self._conn: Any = None
        self.opened = 0  # how many times a connection was opened (for tests and logs)

    def get(self) -> Any:
        """The current connection, opening one if there is none."""
        with self._lock:
            if self._conn is None:
                self._conn = self._open()
            return self._conn

    def _open(self) -> Any:
        # libvirt prints every error to stderr unless a handler is set; we raise them instead.
        libvirt.registerErrorHandler(_silence, None)
        try:
            conn = self._opener(self.uri)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot connect to libvirt at {self.uri}: {err}") from None
        if conn is None:  # very old bindings returned None instead of raising
            raise HypervisorError(f"cannot connect to libvirt at {self.uri}")
        self.opened += 1
        log.info("Connected to libvirt at %s", self.uri)
        return conn

    def _is_dead(self, conn: Any) -> bool:
        try:
            return not conn.isAlive()
        except libvirt.libvirtError:
            return True

    def _drop(self, conn: Any) -> None:
        with self._lock:
            if self._conn is not conn:
                return  # another thread already replaced it
            self._conn = None
        try:
            conn.close()
        except libvirt.libvirtError:
            log.debug("Closing a dead libvirt connection failed", exc_info=True)

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)``; if the connection died under it, reconnect and run it once more.

        libvirt errors propagate untranslated (callers map them with :func:`map_error`).
        """
        conn = self.get()
        try:
            return fn(conn)
        except libvirt.libvirtError as err:
            if error_code(err) not in _CONNECTION_ERRORS or not self._is_dead(conn):
                raise
            log.warning("libvirt connection to %s lost (%s); reconnecting", self.uri, err)
            self._drop(conn)
        return fn(self.get())

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                log.debug("Closing the libvirt connection failed", exc_info=True)
