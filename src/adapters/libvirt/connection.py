"""One libvirt connection per process: opened lazily, reopened when libvirtd restarted.

Both libvirt adapters share one :class:`LibvirtConnection`. Every call goes through
:meth:`LibvirtConnection.call`, which hands the function a live ``virConnect`` and, when
the call fails because the connection died (libvirtd restarted, the socket closed), opens
a new connection and runs the function once more. Every function passed in must therefore
be safe to run twice: ours are (a forced media change, a whole-block metadata write and
the reads are idempotent). Errors are mapped to the domain's typed errors in one place,
:func:`map_error`.

Calls on one VM go through :meth:`LibvirtConnection.call_domain`, which keeps the VM's
``virDomain`` handle (by UUID, for the life of the connection, the most recently used
:data:`MAX_DOMAINS`) so that a port call does not pay a ``lookupByUUIDString`` round trip.
A handle names the domain by UUID, so it stays good while a domain of that UUID exists
(libvirt resolves the UUID on every call); when libvirt answers ``VIR_ERR_NO_DOMAIN`` on a
kept handle, the handle is dropped, looked up once more and the function run once more:
the second answer, a new handle or "no such domain", is the true one. A reconnect drops
every kept handle.

Each kept handle carries a small memo (:meth:`LibvirtConnection.memo`): what the adapters
learnt about the domain through that handle and need not ask again on every call (whether it
is persistent; the drives' ``<disk>`` elements from the last domain XML read). A memo lives
exactly as long as its handle: it goes when the handle is dropped, replaced, pushed out of
the kept set, or when the connection is reopened or closed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
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
MAX_DOMAINS = 4096  # domain handles kept per connection, most recently used first

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
_PERSISTENT = "persistent"  # memo key: the domain's isPersistent() answer


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
        # virDomain handles on ``self._conn`` by UUID string, least recently used first.
        self._domains: OrderedDict[str, Any] = OrderedDict()
        # What the adapters remember per kept handle, by UUID string (see memo()).
        self._memos: dict[str, dict[str, Any]] = {}
        self.opened = 0  # how many times a connection was opened (for tests and logs)
        self.lookups = 0  # how many times a domain was looked up by UUID (for tests)

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
            self._domains.clear()
            self._memos.clear()
        try:
            conn.close()
        except libvirt.libvirtError:
            log.debug("Closing a dead libvirt connection failed", exc_info=True)

    # --- domain handles --------------------------------------------------------------

    def domain(self, conn: Any, uuid: str) -> tuple[Any, bool]:
        """The handle of the domain ``uuid`` on ``conn``, and whether it was a kept one.

        Only handles on the connection this object opened are kept: a ``conn`` that is not
        (or no longer) ours is asked every time.
        """
        with self._lock:
            ours = conn is self._conn
            dom = self._domains.get(uuid) if ours else None
            if dom is not None:
                self._domains.move_to_end(uuid)
                return dom, True
        dom = conn.lookupByUUIDString(uuid)
        self.lookups += 1
        if ours:
            self.remember(conn, ((uuid, dom),))
        return dom, False

    def remember(self, conn: Any, handles: Iterable[tuple[str, Any]]) -> None:
        """Keep ``(uuid, handle)`` pairs got on ``conn`` (ignored unless ``conn`` is ours)."""
        with self._lock:
            if conn is not self._conn:
                return
            for uuid, dom in handles:
                if self._domains.get(uuid) is not dom:
                    self._memos.pop(uuid, None)  # a new handle starts knowing nothing
                self._domains[uuid] = dom
                self._domains.move_to_end(uuid)
            while len(self._domains) > MAX_DOMAINS:
                old, _dom = self._domains.popitem(last=False)
                self._memos.pop(old, None)

    def forget(self, uuid: str, dom: Any) -> None:
        """Drop the kept handle of ``uuid`` if it is still ``dom``."""
        with self._lock:
            if self._domains.get(uuid) is dom:
                del self._domains[uuid]
                self._memos.pop(uuid, None)

    def memo(self, uuid: str, dom: Any) -> dict[str, Any]:
        """What is remembered about the domain ``uuid`` with its kept handle ``dom``.

        The same dict on every call while ``dom`` is the kept handle of ``uuid``; dropped
        with the handle. For a handle that is not (or no longer) kept, a new empty dict
        each time, so nothing learnt through it outlives the call.
        """
        with self._lock:
            if self._domains.get(uuid) is not dom:
                return {}
            return self._memos.setdefault(uuid, {})

    def is_persistent(self, uuid: str, dom: Any) -> bool:
        """Whether the domain is persistent: asked once per kept handle, then remembered.

        A running domain can be defined or undefined at any time, so the answer can go
        stale while the handle is kept. Undefined (persistent -> transient): libvirt refuses
        a change that names the configuration, and :meth:`affecting` asks again. Defined
        (transient -> persistent): changes keep going to the live domain only, until the
        handle is dropped; its configuration keeps the CD and metadata it was defined with.
        vdsm's VMs are transient and are never defined while they run.
        """
        memo = self.memo(uuid, dom)
        known = memo.get(_PERSISTENT)
        if known is None:
            known = memo[_PERSISTENT] = bool(dom.isPersistent())
        return bool(known)

    def affecting(self, uuid: str, dom: Any, fn: Callable[[bool], T]) -> T:
        """``fn(persistent)``: a change to the domain, told whether it is persistent.

        When the remembered answer was "persistent" and libvirt refuses the change as
        invalid (a domain undefined while it runs has no configuration to change), the
        answer is asked afresh and ``fn`` run once more: the refused call changed nothing.
        """
        remembered = _PERSISTENT in self.memo(uuid, dom)
        persistent = self.is_persistent(uuid, dom)
        try:
            return fn(persistent)
        except libvirt.libvirtError as err:
            if not (remembered and persistent
                    and error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID):
                raise
            self.memo(uuid, dom).pop(_PERSISTENT, None)
            log.debug("Domain %s refused a change (%s); asking again whether it is "
                      "persistent", uuid, err)
        return fn(self.is_persistent(uuid, dom))

    def call_domain(self, uuid: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(domain)`` on the domain ``uuid`` (a kept handle when there is one).

        On ``VIR_ERR_NO_DOMAIN`` from a kept handle, look the domain up once more and run
        ``fn`` once more; reconnects as :meth:`call` does. ``fn`` must be safe to run twice.
        """
        def run(conn: Any) -> T:
            dom, kept = self.domain(conn, uuid)
            if not kept:
                return fn(dom)
            try:
                return fn(dom)
            except libvirt.libvirtError as err:
                if error_code(err) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                log.debug("Kept handle of domain %s is gone (%s); looking it up again",
                          uuid, err)
                self.forget(uuid, dom)
            return fn(self.domain(conn, uuid)[0])
        return self.call(run)

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
            self._domains.clear()
            self._memos.clear()
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                log.debug("Closing the libvirt connection failed", exc_info=True)
