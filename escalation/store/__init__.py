"""Durable state: one interface (``base.Store``), two backends (SQLite default, PostgreSQL)."""
