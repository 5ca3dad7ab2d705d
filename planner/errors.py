"""Errors the planner raises; the engine turns them into ErrorResponses with the same SQLSTATE."""

from __future__ import annotations


class SqlError(Exception):
    """A statement that cannot be planned: ``sqlstate`` per PostgreSQL's errcodes appendix.

    ``position`` is the 1-based character offset into the statement text where known.
    """

    def __init__(self, sqlstate: str, message: str, *, position: int | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.position = position
        self.detail = detail
        self.hint = hint


def undefined_table(name: str) -> SqlError:
    return SqlError("42P01", f'relation "{name}" does not exist')


def undefined_column(name: str) -> SqlError:
    return SqlError("42703", f'column "{name}" does not exist')


def feature_not_supported(what: str) -> SqlError:
    return SqlError("0A000", f"{what} is not supported")
