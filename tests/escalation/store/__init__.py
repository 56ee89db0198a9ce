"""The store: one conformance suite run against SQLite and PostgreSQL, and each backend's own tests."""
