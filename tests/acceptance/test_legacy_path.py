"""The legacy route: an ISO given by path (old ISO domains)."""

from pytest_bdd import scenarios

scenarios("legacy_path.feature")
