"""Statements and queries without I/O: shared logic that each backend drives its own way.

A query is a generator: it yields ``Statement``s and is sent each one's result (rows, a row
count, or ``None`` after an executemany); what it returns is the query's answer. SQLite drives
queries synchronously on its worker thread (a whole query is one trip there), PostgreSQL awaits
each statement on its connection. Queries compose with ``yield from``.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from escalation.store.sql.dialect import Row

__all__ = ["Mode", "Query", "Statement", "Steps", "execute", "execute_many", "fetch"]

_T = TypeVar("_T")


class Mode(enum.Enum):
    FETCH = "fetch"  # result: the rows
    COUNT = "count"  # result: how many rows the statement changed
    MANY = "many"  # params is a list of parameter rows (executemany); result: None


@dataclass(slots=True)  # not frozen: several per transaction, only ever read by a driver
class Statement:
    """SQL with ``?`` placeholders and its parameters."""

    sql: str
    params: Sequence[Any]
    mode: Mode


Query = Generator[Statement, Any, _T]


def fetch(sql: str, *params: Any) -> Query[list[Row]]:
    rows: list[Row] = yield Statement(sql, params, Mode.FETCH)
    return rows


def execute(sql: str, *params: Any) -> Query[int]:
    count: int = yield Statement(sql, params, Mode.COUNT)
    return count


def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> Query[None]:
    yield Statement(sql, rows, Mode.MANY)


class Steps(Generic[_T]):
    """A query as a driver sees it: ``next(result)`` sends the previous statement's result and
    gives the next statement, or ``None`` once the query has answered (see ``answer``)."""

    def __init__(self, query: Query[_T]) -> None:
        self._query = query
        self.name: str = getattr(query, "__name__", "query")  # for error messages
        self.answer: _T

    def next(self, result: Any) -> Statement | None:
        try:
            return self._query.send(result)
        except StopIteration as done:
            self.answer = done.value
            return None
