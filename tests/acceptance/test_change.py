"""The design's flow "VM with loaded CD, changeCD"."""

from pytest_bdd import scenarios

scenarios("change.feature")
