"""Fixtures for the dedup, lifecycle and incident API tests (in-process app driver)."""
