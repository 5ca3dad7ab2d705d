"""Column types: the PostgreSQL type a column was declared with, and how it is stored in Arrow.

Storage keeps every value in the Arrow type given here; the planner reports the PostgreSQL type
(OID, typmod, format_type text) to clients. OIDs follow pg_type in PostgreSQL 16; the pgvector
types, which PostgreSQL assigns at CREATE EXTENSION time, have fixed OIDs in sqlvec.

One-dimensional arrays of the scalar types in ``ARRAY_ELEMENTS`` are column types too, named as
pg_type names them (``_int4`` is ``integer[]``) and stored as Arrow ``list<element>``; an array
column's modifiers (``varchar(10)[]``) are its element's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# pgvector's types get OIDs when the extension is created; sqlvec fixes them once, everywhere.
VECTOR_OID = 16385
VECTOR_ARRAY_OID = 16386


@dataclass(frozen=True)
class PgType:
    name: str  # pg_type.typname
    oid: int
    array_oid: int
    typlen: int  # pg_type.typlen: -1 varlena
    sql_name: str  # format_type() without modifiers


PG_TYPES: dict[str, PgType] = {
    t.name: t
    for t in (
        PgType("bool", 16, 1000, 1, "boolean"),
        PgType("bytea", 17, 1001, -1, "bytea"),
        PgType("int8", 20, 1016, 8, "bigint"),
        PgType("int2", 21, 1005, 2, "smallint"),
        PgType("int4", 23, 1007, 4, "integer"),
        PgType("text", 25, 1009, -1, "text"),
        PgType("json", 114, 199, -1, "json"),
        PgType("float4", 700, 1021, 4, "real"),
        PgType("float8", 701, 1022, 8, "double precision"),
        PgType("varchar", 1043, 1015, -1, "character varying"),
        PgType("date", 1082, 1182, 4, "date"),
        PgType("timestamp", 1114, 1115, 8, "timestamp without time zone"),
        PgType("timestamptz", 1184, 1185, 8, "timestamp with time zone"),
        PgType("numeric", 1700, 1231, -1, "numeric"),
        PgType("uuid", 2950, 2951, 16, "uuid"),
        PgType("jsonb", 3802, 3807, -1, "jsonb"),
        PgType("vector", VECTOR_OID, VECTOR_ARRAY_OID, -1, "vector"),
    )
}
# Element types whose one-dimensional arrays can be stored: pg_type's array entry for each ("_int4").
ARRAY_ELEMENTS = ("bool", "int2", "int4", "int8", "float4", "float8", "text", "varchar")
PG_TYPES.update({
    f"_{e}": PgType(f"_{e}", PG_TYPES[e].array_oid, 0, -1, PG_TYPES[e].sql_name + "[]") for e in ARRAY_ELEMENTS
})
PG_TYPES_BY_OID: dict[int, PgType] = {t.oid: t for t in PG_TYPES.values()}

# Spellings accepted in DDL -> pg_type name.
TYPE_ALIASES: dict[str, str] = {
    "smallint": "int2", "int2": "int2",
    "integer": "int4", "int": "int4", "int4": "int4",
    "bigint": "int8", "int8": "int8",
    "real": "float4", "float4": "float4",
    "double precision": "float8", "double": "float8", "float8": "float8", "float": "float8",
    "numeric": "numeric", "decimal": "numeric",
    "boolean": "bool", "bool": "bool",
    "text": "text",
    "varchar": "varchar", "character varying": "varchar",
    "jsonb": "jsonb", "json": "json",
    "date": "date",
    "timestamp": "timestamp", "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
    "bytea": "bytea",
    "vector": "vector",
}

# numeric without precision keeps any scale in PostgreSQL; sqlvec stores it as its canonical text.
_NUMERIC_DEFAULT_PRECISION = 38


@dataclass(frozen=True)
class ColumnType:
    """A declared column type: the pg_type name plus its modifiers.

    ``dim`` is vector(n)'s dimension; ``length`` varchar(n)'s (and varchar(n)[]'s); ``precision``/``scale``
    numeric(p, s)'s. Array types are named ``_`` + their element's name.
    """

    name: str
    dim: int | None = None
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @property
    def pg(self) -> PgType:
        return PG_TYPES[self.name]

    @property
    def oid(self) -> int:
        return self.pg.oid

    @property
    def is_array(self) -> bool:
        return self.name.startswith("_")

    @property
    def element(self) -> ColumnType:
        """An array type's element type, with the array's modifiers (varchar(10)[] -> varchar(10))."""
        assert self.is_array, self.name
        return ColumnType(self.name[1:], self.dim, self.length, self.precision, self.scale)

    def array_of(self) -> ColumnType:
        """The one-dimensional array of this type (varchar(10) -> varchar(10)[])."""
        return ColumnType("_" + self.name, self.dim, self.length, self.precision, self.scale)

    @property
    def typmod(self) -> int:
        """pg_attribute.atttypmod as PostgreSQL computes it for this declaration (an array's is its element's)."""
        if self.is_array:
            return self.element.typmod
        if self.name == "vector" and self.dim is not None:
            return self.dim
        if self.name == "varchar" and self.length is not None:
            return self.length + 4
        if self.name == "numeric" and self.precision is not None:
            return ((self.precision << 16) | (self.scale or 0)) + 4
        return -1

    def sql(self) -> str:
        """format_type(oid, typmod): ``vector(3)``, ``character varying(10)``, ``numeric(10,2)``, ``integer[]``."""
        if self.is_array:
            return self.element.sql() + "[]"
        base = self.pg.sql_name
        if self.name == "vector" and self.dim is not None:
            return f"vector({self.dim})"
        if self.name == "varchar" and self.length is not None:
            return f"character varying({self.length})"
        if self.name == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale or 0})"
        return base

    def arrow(self) -> pa.DataType:
        """The Arrow type values of this column are stored in."""
        if self.is_array:
            return pa.list_(self.element.arrow())
        if self.name == "vector":
            return pa.list_(pa.float32(), self.dim) if self.dim is not None else pa.list_(pa.float32())
        if self.name == "numeric":
            if self.precision is None:
                return pa.string()
            return pa.decimal128(self.precision, self.scale or 0)
        return _ARROW[self.name]

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> ColumnType:
        return cls(**d)


_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "bytea": pa.binary(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "text": pa.string(),
    "varchar": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "uuid": pa.string(),
}


@dataclass(frozen=True)
class ColumnSchema:
    """One column of a table as the catalog keeps it.

    ``default`` is the DEFAULT expression as PostgreSQL SQL text (None: no default); ``identity``
    is "always" / "by default" for GENERATED ... AS IDENTITY and serial columns ("by default"),
    whose values come from the table's sequence for that column.
    """

    name: str
    type: ColumnType
    not_null: bool = False
    default: str | None = None
    identity: str | None = None

    def to_json(self) -> dict:
        d = {"name": self.name, "type": self.type.to_json(), "not_null": self.not_null}
        if self.default is not None:
            d["default"] = self.default
        if self.identity is not None:
            d["identity"] = self.identity
        return d

    @classmethod
    def from_json(cls, d: dict) -> ColumnSchema:
        return cls(d["name"], ColumnType.from_json(d["type"]), d.get("not_null", False),
                   d.get("default"), d.get("identity"))


IndexParam = int | float | str


@dataclass(frozen=True)
class IndexSchema:
    """A vector index on one ``vector(n)`` column (``CREATE INDEX name ON t USING method (column opclass)``).

    ``method`` is a storage.vector_index method (hnsw, ivfflat, ivfpq, ivfsq8, flat, ...); ``metric`` the
    distance its operator class orders by (l2, ip, cosine, l1); ``opclass`` the operator class as the user
    wrote it (vector_l2_ops), kept for the catalogs clients read. ``params`` are the build settings
    (``WITH (m = 16)``) as sorted (name, value) pairs, named like the fields of the method's ``*Params``
    dataclass; unnamed settings take that dataclass's defaults. ``oid`` is assigned by storage, from the
    same counter as table OIDs (PostgreSQL's relations share one OID space and one namespace).
    """

    name: str
    column: str
    method: str
    metric: str
    opclass: str
    params: tuple[tuple[str, IndexParam], ...] = ()
    oid: int = 0

    @property
    def params_dict(self) -> dict[str, IndexParam]:
        return dict(self.params)

    def to_json(self) -> dict:
        return {"name": self.name, "column": self.column, "method": self.method, "metric": self.metric,
                "opclass": self.opclass, "params": dict(self.params), "oid": self.oid}

    @classmethod
    def from_json(cls, d: dict) -> IndexSchema:
        return cls(d["name"], d["column"], d["method"], d["metric"], d.get("opclass", ""),
                   tuple(sorted(d.get("params", {}).items())), d.get("oid", 0))


@dataclass(frozen=True)
class TableSchema:
    """A table: its columns in order, its primary key (column names, possibly empty) and its vector
    indexes.

    ``oid`` is assigned by the catalog when the table is created, each index's when it is created.
    """

    name: str
    columns: tuple[ColumnSchema, ...]
    primary_key: tuple[str, ...] = ()
    oid: int = 0
    indexes: tuple[IndexSchema, ...] = ()
    primary_key_name: str = ""  # CONSTRAINT name PRIMARY KEY; empty: PostgreSQL's default, <table>_pkey

    @property
    def key_name(self) -> str:
        """The primary key's constraint (and index) name."""
        return self.primary_key_name or f"{self.name}_pkey"

    def index(self, name: str) -> IndexSchema | None:
        for i in self.indexes:
            if i.name == name:
                return i
        return None

    def column(self, name: str) -> ColumnSchema | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a batch of this table's user columns (no row id)."""
        return pa.schema([pa.field(c.name, c.type.arrow(), nullable=not c.not_null) for c in self.columns])

    def to_json(self) -> dict:
        d = {"name": self.name, "columns": [c.to_json() for c in self.columns],
             "primary_key": list(self.primary_key), "oid": self.oid}
        if self.indexes:  # absent, not empty, so a table without indexes is stored as before they existed
            d["indexes"] = [i.to_json() for i in self.indexes]
        if self.primary_key_name:
            d["primary_key_name"] = self.primary_key_name
        return d

    @classmethod
    def from_json(cls, d: dict) -> TableSchema:
        return cls(d["name"], tuple(ColumnSchema.from_json(c) for c in d["columns"]),
                   tuple(d.get("primary_key", ())), d.get("oid", 0),
                   tuple(IndexSchema.from_json(i) for i in d.get("indexes", ())), d.get("primary_key_name", ""))
