"""Errors raised by storage. Every one subclasses StorageError and says what went wrong in words a person
can act on; the engine maps them to SQLSTATEs (23505, 42P07, 42P01, 42704, 23502, XX001)."""

from __future__ import annotations


class StorageError(Exception):
    """Misuse of the storage API or a storage failure; a failing commit changes nothing."""


class DuplicateKeyError(StorageError):
    """An insert would duplicate a primary key among live rows or within its batch (SQLSTATE 23505).

    ``key_repr`` is the key as PostgreSQL prints it in the DETAIL line, e.g. ``(id)=(5)``.
    """

    def __init__(self, table: str, key_repr: str, constraint: str = ""):
        self.table = table
        self.key_repr = key_repr
        self.constraint = constraint or f"{table}_pkey"
        self.detail = f"Key {key_repr} already exists."
        super().__init__(f'duplicate key value violates unique constraint "{self.constraint}"')


class NullValueError(StorageError):
    """A NULL in a NOT NULL (or primary-key) column (SQLSTATE 23502)."""

    def __init__(self, table: str, column: str):
        self.table = table
        self.column = column
        super().__init__(f'null value in column "{column}" of relation "{table}" '
                         "violates not-null constraint")


class RowNotLiveError(StorageError):
    """A Delete names a row id that is not a live row (already deleted, e.g. by a concurrent commit,
    or never assigned). The engine may report it as a serialization failure (SQLSTATE 40001)."""

    def __init__(self, table: str, row_id: int):
        self.table = table
        self.row_id = row_id
        super().__init__(f'row id {row_id} is not a live row of table "{table}"')


class TableExistsError(StorageError):
    """CREATE TABLE of a name the catalog already has (SQLSTATE 42P07)."""

    def __init__(self, table: str):
        self.table = table
        super().__init__(f'relation "{table}" already exists')


class IndexExistsError(TableExistsError):
    """CREATE INDEX of a name already used by an index or a table (SQLSTATE 42P07).

    A TableExistsError because PostgreSQL keeps tables and indexes in one relation namespace and reports
    both clashes the same way; ``index`` is the name.
    """

    def __init__(self, name: str):
        super().__init__(name)
        self.index = name


class NoSuchIndexError(StorageError):
    """DROP INDEX of a name no index has (SQLSTATE 42704, undefined_object)."""

    def __init__(self, name: str):
        self.index = name
        super().__init__(f'index "{name}" does not exist')


class NoSuchTableError(StorageError):
    """A table name the catalog does not have (SQLSTATE 42P01)."""

    def __init__(self, table: str):
        self.table = table
        super().__init__(f'relation "{table}" does not exist')


class CorruptionError(StorageError):
    """Stored data is damaged in a way recovery must not guess about (SQLSTATE XX001).

    Carries the damaged file and the byte offset where the damage starts.
    """

    def __init__(self, path: str, offset: int, reason: str):
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt data in {self.path} at offset {offset}: {reason}")
