"""The design's flow "VM with empty tray, insert CD"."""

from pytest_bdd import scenarios

scenarios("insert.feature")
