"""What ``CREATE INDEX ... USING <method> (col <opclass>) WITH (...)`` accepts: access methods, operator
classes and build options, checked the way PostgreSQL and pgvector check them.

pgvector's names are kept where pgvector has them (``hnsw`` with ``m`` and ``ef_construction``, ``ivfflat``
with ``lists``; opclasses ``vector_l2_ops``, ``vector_ip_ops``, ``vector_cosine_ops``, ``vector_l1_ops``) and
so are its limits and messages; ``ivfpq``, ``ivfsq8``, ``scann`` and ``flat`` are sqlvec's own. Each method
maps to a ``storage.vector_index`` method of the same name whose params dataclass has the option names
as fields.

Errors (PostgreSQL 16 + pgvector 0.6 wording and SQLSTATEs):
    access method "x" does not exist                                 42704
    operator class "x" does not exist for access method "hnsw"       42704
    unrecognized parameter "x"                                       22023
    value 0 out of bounds for option "m" (+ DETAIL with the range)   22023
    invalid value for integer option "m": "abc"                      22023
    ef_construction must be greater than or equal to 2 * m           XX000 (pgvector uses elog)
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import SqlError


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # int or float
    low: float
    high: float
    default: int | float


@dataclass(frozen=True)
class Method:
    name: str
    options: tuple[Option, ...]
    metrics: tuple[str, ...]  # the metrics the method's opclasses may select

    def option(self, name: str) -> Option | None:
        for o in self.options:
            if o.name == name:
                return o
        return None


_LISTS = Option("lists", int, 1, 32768, 100)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("hnsw", (Option("m", int, 2, 100, 16), Option("ef_construction", int, 4, 1000, 64)),
               ("l2", "ip", "cosine", "l1")),
        Method("ivfflat", (_LISTS,), ("l2", "ip", "cosine")),
        Method("ivfpq", (_LISTS, Option("m", int, 0, 4096, 0), Option("nbits", int, 1, 16, 8)),
               ("l2", "ip", "cosine")),
        Method("ivfsq8", (_LISTS,), ("l2", "ip", "cosine")),
        Method("scann", (Option("leaves", int, 0, 65536, 0), Option("dims_per_block", int, 1, 16, 2),
                         Option("anisotropic_threshold", float, 0.0, 1.0, 0.2),
                         Option("training_sample", int, 1000, 10_000_000, 100_000)),
               ("l2", "ip", "cosine")),
        Method("flat", (), ("l2", "ip", "cosine", "l1")),
    )
}

# Operator class -> metric, and the operator whose ORDER BY the index serves.
OPCLASSES: dict[str, str] = {
    "vector_l2_ops": "l2",
    "vector_ip_ops": "ip",
    "vector_cosine_ops": "cosine",
    "vector_l1_ops": "l1",
}
DEFAULT_OPCLASS = "vector_l2_ops"  # pgvector's DEFAULT FOR TYPE vector

# Access methods PostgreSQL has for scalar columns: sqlvec scans columns vectorised and keeps only a
# primary-key index, so these are refused rather than pretended.
SCALAR_METHODS = ("btree", "hash", "gist", "gin", "brin", "spgist")


def method(name: str) -> Method:
    m = METHODS.get(name)
    if m is None:
        if name in SCALAR_METHODS:
            raise SqlError("0A000", f'access method "{name}" is not supported by sqlvec',
                           hint="sqlvec indexes vector columns only (USING hnsw, ivfflat, ivfpq, ivfsq8, scann, "
                                "flat); scalar filters are evaluated by vectorised scans.")
        raise SqlError("42704", f'access method "{name}" does not exist')
    return m


def metric_for(m: Method, opclass: str) -> str:
    metric = OPCLASSES.get(opclass)
    if metric is None or metric not in m.metrics:
        raise SqlError("42704", f'operator class "{opclass}" does not exist for access method "{m.name}"')
    return metric


def check_options(m: Method, given: dict[str, str]) -> tuple[tuple[str, int | float], ...]:
    """Validate WITH (...) options (values as written) -> sorted (name, value) pairs, defaults filled."""
    values: dict[str, int | float] = {o.name: o.default for o in m.options}
    for name, text in given.items():
        o = m.option(name)
        if o is None:
            raise SqlError("22023", f'unrecognized parameter "{name}"')
        try:
            v: int | float = o.kind(text)
            if o.kind is int and str(v) != text.strip().lstrip("+"):
                raise ValueError(text)
        except ValueError:
            kind = "integer" if o.kind is int else "floating point"
            raise SqlError("22023", f'invalid value for {kind} option "{name}": {text}') from None
        if not o.low <= v <= o.high:
            low, high = (int(o.low), int(o.high)) if o.kind is int else (o.low, o.high)
            raise SqlError("22023", f'value {text} out of bounds for option "{name}"',
                           detail=f'Valid values are between "{low}" and "{high}".')
        values[name] = v
    if m.name == "hnsw" and values["ef_construction"] < 2 * values["m"]:
        # pgvector raises this with elog(ERROR), so PostgreSQL reports internal_error (checked against 0.6.2)
        raise SqlError("XX000", "ef_construction must be greater than or equal to 2 * m")
    return tuple(sorted(values.items()))
