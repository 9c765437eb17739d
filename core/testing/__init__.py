"""Test kit for plugin authors: drivers, conformance suite, test environments."""
