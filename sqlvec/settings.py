"""Run-time settings (PostgreSQL's GUCs) as a session sees them: SET, SET LOCAL, RESET, SHOW.

https://www.postgresql.org/docs/16/config-setting.html. Names are case-insensitive; names with a
dot (``hnsw.ef_search``) are extension settings and may be set freely, as in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

SERVER_VERSION = "16.4"
SERVER_VERSION_NUM = "160004"
VERSION_STRING = (f"PostgreSQL {SERVER_VERSION} (sqlvec 0.1.0) on x86_64-pc-linux-gnu, "
                  "compiled by sqlvec, 64-bit")


@dataclass(frozen=True)
class Setting:
    name: str  # canonical spelling, as SHOW prints its column
    default: str
    reportable: bool = False  # sent as ParameterStatus at startup and when changed
    settable: bool = True
    description: str = ""
    int_range: tuple[int, int] | None = None  # an integer setting: its bounds, checked by SET


SETTINGS: dict[str, Setting] = {
    s.name.lower(): s
    for s in (
        Setting("server_version", SERVER_VERSION, reportable=True, settable=False),
        Setting("server_version_num", SERVER_VERSION_NUM, settable=False),
        Setting("server_encoding", "UTF8", reportable=True, settable=False),
        Setting("client_encoding", "UTF8", reportable=True),
        Setting("DateStyle", "ISO, MDY", reportable=True),
        Setting("IntervalStyle", "postgres", reportable=True),
        Setting("TimeZone", "UTC", reportable=True),
        Setting("integer_datetimes", "on", reportable=True, settable=False),
        Setting("standard_conforming_strings", "on", reportable=True),
        Setting("application_name", "", reportable=True),
        Setting("is_superuser", "on", reportable=True, settable=False),
        Setting("session_authorization", "postgres", reportable=True),
        Setting("default_transaction_read_only", "off", reportable=True),
        Setting("in_hot_standby", "off", reportable=True, settable=False),
        Setting("search_path", '"$user", public'),
        Setting("extra_float_digits", "1"),
        Setting("default_transaction_isolation", "read committed"),
        Setting("transaction_isolation", "read committed"),
        Setting("statement_timeout", "0"),
        Setting("lock_timeout", "0"),
        Setting("idle_in_transaction_session_timeout", "0"),
        Setting("max_identifier_length", "63", settable=False),
        Setting("bytea_output", "hex"),
        Setting("client_min_messages", "notice"),
        Setting("timezone_abbreviations", "Default"),
        Setting("lc_messages", "C"), Setting("lc_monetary", "C"), Setting("lc_numeric", "C"), Setting("lc_time", "C"),
        Setting("max_connections", "100", settable=False),
        Setting("block_size", "8192", settable=False),
        Setting("jit", "off"),
        Setting("row_security", "on"),
        Setting("synchronous_commit", "on"),
        Setting("work_mem", "4MB"),
        Setting("maintenance_work_mem", "64MB"),
        Setting("max_parallel_maintenance_workers", "2"),
        Setting("max_parallel_workers", "8"),
        Setting("max_parallel_workers_per_gather", "2"),
        Setting("enable_seqscan", "on"),
        Setting("enable_indexscan", "on"),
        # Vector search settings, read when a query runs (never baked into a cached plan). pgvector's
        # names and ranges where pgvector has them.
        Setting("hnsw.ef_search", "40", int_range=(1, 1000),
                description="HNSW candidate list size of a search; higher finds more true neighbours, slower"),
        Setting("ivfflat.probes", "1", int_range=(1, 32768),
                description="inverted lists searched by ivfflat, ivfpq and ivfsq8 indexes"),
        Setting("sqlvec.rerank", "4", int_range=(1, 1000),
                description="candidates per result that quantised indexes (ivfpq, ivfsq8, scann) re-rank exactly"),
        Setting("sqlvec.exact_below", "10000", int_range=(0, 2147483647),
                description="a filter admitting at most this many rows of a segment searches them exactly"),
        Setting("scann.leaves_to_search", "0", int_range=(0, 65536),
                description="partitions a scann index searches (0: automatic)"),
        Setting("scann.reorder", "0", int_range=(0, 100000),
                description="candidates a scann index re-orders exactly (0: max(k * sqlvec.rerank, 100))"),
    )
}

_UTC_NAMES = {"utc", "gmt", "etc/utc", "z", "zulu", "universal", "+00", "+00:00", "0", "default", "local"}
_UTF8_NAMES = {"utf8", "utf-8", "unicode"}


class SettingError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def canonical(name: str) -> str:
    s = SETTINGS.get(name.lower())
    return s.name if s else name.lower()


def check(name: str, value: str) -> str:
    """Validate ``SET name = value``; return the value as SHOW will print it."""
    key = name.lower()
    s = SETTINGS.get(key)
    if s is None:
        if "." in key:
            return value
        raise SettingError("42704", f'unrecognized configuration parameter "{name}"')
    if not s.settable:
        raise SettingError("55P02", f'parameter "{s.name}" cannot be changed')
    if s.int_range is not None:
        return _check_int(s, value)
    if key == "timezone":
        if value.lower() not in _UTC_NAMES:
            raise SettingError("22023", f'invalid value for parameter "TimeZone": "{value}" '
                                        "(sqlvec keeps timestamps in UTC; only UTC is supported)")
        return "UTC"
    if key == "client_encoding":
        if value.lower() not in _UTF8_NAMES:
            raise SettingError("22023", f'invalid value for parameter "client_encoding": "{value}" '
                                        "(sqlvec speaks UTF8 only)")
        return "UTF8"
    if key == "datestyle" and not value.upper().startswith("ISO"):
        raise SettingError("22023", f'invalid value for parameter "DateStyle": "{value}" (only ISO is supported)')
    if key == "standard_conforming_strings" and value.lower() not in ("on", "true", "1", "yes"):
        raise SettingError("22023", 'standard_conforming_strings cannot be turned off in sqlvec')
    return value


def _check_int(s: Setting, value: str) -> str:
    try:
        n = int(value.strip())
    except ValueError:
        raise SettingError("22023", f'invalid value for parameter "{s.name}": "{value}"') from None
    low, high = s.int_range  # type: ignore[misc]
    if not low <= n <= high:
        raise SettingError("22023", f'{n} is outside the valid range for parameter "{s.name}" ({low} .. {high})')
    return str(n)


class SessionSettings:
    """One session's settings: session values, plus SET LOCAL values until the transaction ends."""

    def __init__(self, user: str, startup: dict[str, str]) -> None:
        self.values: dict[str, str] = {k: s.default for k, s in SETTINGS.items()}
        self.values["session_authorization"] = user
        self.local: dict[str, str] = {}
        self.changed: dict[str, str] = {}
        self.version = 0  # bumped on every change, so callers can cache what they derive from settings
        self._derived: dict[str, tuple[int, object]] = {}
        for name, value in startup.items():
            key = name.lower()
            if key in ("user", "database", "replication", "options"):
                continue
            try:
                self.values[key] = check(name, value)
            except SettingError:
                pass  # PostgreSQL rejects the connection; sqlvec keeps its own value and goes on

    def derived(self, name: str, build: Callable[[SessionSettings], T]) -> T:
        """``build(self)``, computed again only after a setting changed (per-query settings lookups
        would otherwise parse strings on every execution of a cached plan)."""
        hit = self._derived.get(name)
        if hit is not None and hit[0] == self.version:
            return hit[1]  # type: ignore[return-value]
        value = build(self)
        self._derived[name] = (self.version, value)
        return value

    def get(self, name: str) -> str | None:
        key = name.lower()
        if key in self.local:
            return self.local[key]
        return self.values.get(key)

    def set(self, name: str, value: str, *, local: bool = False) -> None:
        key = name.lower()
        value = check(name, value)
        if local:
            self.local[key] = value
        else:
            self.values[key] = value
            self.local.pop(key, None)
        self._note_change(key)

    def reset(self, name: str) -> None:
        key = name.lower()
        if key == "all":
            for k, s in SETTINGS.items():
                if s.settable and k != "session_authorization" and self.values.get(k) != s.default:
                    self.values[k] = s.default
                    self._note_change(k)
            self.values = {k: v for k, v in self.values.items() if k in SETTINGS}
            self.version += 1
            return
        s = SETTINGS.get(key)
        if s is None and "." not in key:
            raise SettingError("42704", f'unrecognized configuration parameter "{name}"')
        if s is not None and not s.settable:
            raise SettingError("55P02", f'parameter "{s.name}" cannot be changed')
        if s is None:
            self.values.pop(key, None)
        else:
            self.values[key] = s.default
        self.local.pop(key, None)
        self._note_change(key)

    def end_transaction(self) -> None:
        for key in list(self.local):
            del self.local[key]
            self._note_change(key)

    def _note_change(self, key: str) -> None:
        self.version += 1
        s = SETTINGS.get(key)
        if s is not None and s.reportable:
            self.changed[s.name] = self.get(key) or ""

    def reportable(self) -> dict[str, str]:
        return {s.name: self.get(k) or "" for k, s in SETTINGS.items() if s.reportable}

    def show(self, name: str) -> tuple[str, str]:
        value = self.get(name)
        if value is None:
            raise SettingError("42704", f'unrecognized configuration parameter "{name}"')
        return canonical(name), value

    def all(self) -> list[tuple[str, str, str]]:
        return [(s.name, self.get(k) or "", s.description) for k, s in sorted(SETTINGS.items())]
