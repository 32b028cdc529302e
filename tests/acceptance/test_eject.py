"""The design's flow "VM with loaded CD, eject CD"."""

from pytest_bdd import scenarios

scenarios("eject.feature")
