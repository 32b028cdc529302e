# libvirt-python ships no type information: every name in it is Any, as mypy would treat
# a module it cannot find. This stub exists because tests/ is on mypy_path and
# tests/libvirt (no __init__.py) would otherwise be taken for the module `libvirt`;
# Python itself prefers the installed libvirt.py to that namespace directory.
from typing import Any

def __getattr__(name: str) -> Any: ...
