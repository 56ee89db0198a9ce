"""Durable state: one interface (``base.Store``), one shared SQL layer (``sql``), two backends
(SQLite default, PostgreSQL) that only connect, lock, lease and drive the shared queries."""
