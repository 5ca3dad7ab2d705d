"""The relations of pg_catalog that sqlvec has: each column's name and PostgreSQL type, in order.

PostgreSQL 16's columns. sqlvec/pg_catalog.py builds their rows; the planner describes a catalog
query's plain column outputs with these types (``name``, ``"char"``, ``oid`` as PostgreSQL sends them,
which drivers such as asyncpg rely on). ``ARROW`` and ``OIDS`` give each type token's storage and OID.
"""

from __future__ import annotations

import pyarrow as pa

CATALOG_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "pg_catalog.pg_namespace": [
        ("oid", "oid"), ("nspname", "name"), ("nspowner", "oid"), ("nspacl", "text[]")],
    "pg_catalog.pg_class": [
        ("oid", "oid"), ("relname", "name"), ("relnamespace", "oid"), ("reltype", "oid"), ("reloftype", "oid"),
        ("relowner", "oid"), ("relam", "oid"), ("relfilenode", "oid"), ("reltablespace", "oid"), ("relpages", "int4"),
        ("reltuples", "float4"), ("relallvisible", "int4"), ("reltoastrelid", "oid"), ("relhasindex", "bool"),
        ("relisshared", "bool"), ("relpersistence", "char"), ("relkind", "char"), ("relnatts", "int2"),
        ("relchecks", "int2"), ("relhasrules", "bool"), ("relhastriggers", "bool"), ("relhassubclass", "bool"),
        ("relrowsecurity", "bool"), ("relforcerowsecurity", "bool"), ("relispopulated", "bool"),
        ("relreplident", "char"), ("relispartition", "bool"), ("relrewrite", "oid"), ("relfrozenxid", "oid"),
        ("relminmxid", "oid"), ("relacl", "text[]"), ("reloptions", "text[]"), ("relpartbound", "text")],
    "pg_catalog.pg_attribute": [
        ("attrelid", "oid"), ("attname", "name"), ("atttypid", "oid"), ("attlen", "int2"), ("attnum", "int2"),
        ("attcacheoff", "int4"), ("atttypmod", "int4"), ("attndims", "int2"), ("attbyval", "bool"),
        ("attalign", "char"), ("attstorage", "char"), ("attcompression", "char"), ("attnotnull", "bool"),
        ("atthasdef", "bool"), ("atthasmissing", "bool"), ("attidentity", "char"), ("attgenerated", "char"),
        ("attisdropped", "bool"), ("attislocal", "bool"), ("attinhcount", "int2"), ("attstattarget", "int2"),
        ("attcollation", "oid"), ("attacl", "text[]"), ("attoptions", "text[]"), ("attfdwoptions", "text[]"),
        ("attmissingval", "text[]")],
    "pg_catalog.pg_type": [
        ("oid", "oid"), ("typname", "name"), ("typnamespace", "oid"), ("typowner", "oid"), ("typlen", "int2"),
        ("typbyval", "bool"), ("typtype", "char"), ("typcategory", "char"), ("typispreferred", "bool"),
        ("typisdefined", "bool"), ("typdelim", "char"), ("typrelid", "oid"), ("typsubscript", "oid"),
        ("typelem", "oid"), ("typarray", "oid"), ("typinput", "oid"), ("typoutput", "oid"), ("typreceive", "oid"),
        ("typsend", "oid"), ("typmodin", "oid"), ("typmodout", "oid"), ("typanalyze", "oid"), ("typalign", "char"),
        ("typstorage", "char"), ("typnotnull", "bool"), ("typbasetype", "oid"), ("typtypmod", "int4"),
        ("typndims", "int4"), ("typcollation", "oid"), ("typdefaultbin", "text"), ("typdefault", "text"),
        ("typacl", "text[]")],
    "pg_catalog.pg_index": [
        ("indexrelid", "oid"), ("indrelid", "oid"), ("indnatts", "int2"), ("indnkeyatts", "int2"),
        ("indisunique", "bool"), ("indnullsnotdistinct", "bool"), ("indisprimary", "bool"),
        ("indisexclusion", "bool"), ("indimmediate", "bool"), ("indisclustered", "bool"), ("indisvalid", "bool"),
        ("indcheckxmin", "bool"), ("indisready", "bool"), ("indislive", "bool"), ("indisreplident", "bool"),
        ("indkey", "int2vector"), ("indcollation", "oidvector"), ("indclass", "oidvector"), ("indoption", "int2vector"),
        ("indexprs", "text"), ("indpred", "text")],
    "pg_catalog.pg_am": [
        ("oid", "oid"), ("amname", "name"), ("amhandler", "oid"), ("amtype", "char")],
    "pg_catalog.pg_opclass": [
        ("oid", "oid"), ("opcmethod", "oid"), ("opcname", "name"), ("opcnamespace", "oid"), ("opcowner", "oid"),
        ("opcfamily", "oid"), ("opcintype", "oid"), ("opcdefault", "bool"), ("opckeytype", "oid")],
    "pg_catalog.pg_extension": [
        ("oid", "oid"), ("extname", "name"), ("extowner", "oid"), ("extnamespace", "oid"), ("extrelocatable", "bool"),
        ("extversion", "text"), ("extconfig", "oid[]"), ("extcondition", "text[]")],
    "pg_catalog.pg_database": [
        ("oid", "oid"), ("datname", "name"), ("datdba", "oid"), ("encoding", "int4"), ("datlocprovider", "char"),
        ("datistemplate", "bool"), ("datallowconn", "bool"), ("datconnlimit", "int4"), ("datfrozenxid", "oid"),
        ("datminmxid", "oid"), ("dattablespace", "oid"), ("datcollate", "text"), ("datctype", "text"),
        ("daticulocale", "text"), ("daticurules", "text"), ("datcollversion", "text"), ("datacl", "text[]")],
    "pg_catalog.pg_roles": [
        ("rolname", "name"), ("rolsuper", "bool"), ("rolinherit", "bool"), ("rolcreaterole", "bool"),
        ("rolcreatedb", "bool"), ("rolcanlogin", "bool"), ("rolreplication", "bool"), ("rolconnlimit", "int4"),
        ("rolpassword", "text"), ("rolvaliduntil", "text"), ("rolbypassrls", "bool"), ("rolconfig", "text[]"),
        ("oid", "oid")],
    "pg_catalog.pg_description": [
        ("objoid", "oid"), ("classoid", "oid"), ("objsubid", "int4"), ("description", "text")],
    "pg_catalog.pg_attrdef": [
        ("oid", "oid"), ("adrelid", "oid"), ("adnum", "int2"), ("adbin", "text")],
    "pg_catalog.pg_constraint": [
        ("oid", "oid"), ("conname", "name"), ("connamespace", "oid"), ("contype", "char"), ("condeferrable", "bool"),
        ("condeferred", "bool"), ("convalidated", "bool"), ("conrelid", "oid"), ("contypid", "oid"),
        ("conindid", "oid"), ("conparentid", "oid"), ("confrelid", "oid"), ("confupdtype", "char"),
        ("confdeltype", "char"), ("confmatchtype", "char"), ("conislocal", "bool"), ("coninhcount", "int2"),
        ("connoinherit", "bool"), ("conkey", "int2[]"), ("confkey", "int2[]"), ("conpfeqop", "oid[]"),
        ("conppeqop", "oid[]"), ("conffeqop", "oid[]"), ("confdelsetcols", "int2[]"), ("conexclop", "oid[]"),
        ("conbin", "text")],
    "pg_catalog.pg_collation": [
        ("oid", "oid"), ("collname", "name"), ("collnamespace", "oid"), ("collowner", "oid"),
        ("collprovider", "char"), ("collisdeterministic", "bool"), ("collencoding", "int4"), ("collcollate", "text"),
        ("collctype", "text"), ("colliculocale", "text"), ("collicurules", "text"), ("collversion", "text")],
    "pg_catalog.pg_policy": [
        ("oid", "oid"), ("polname", "name"), ("polrelid", "oid"), ("polcmd", "char"), ("polpermissive", "bool"),
        ("polroles", "oid[]"), ("polqual", "text"), ("polwithcheck", "text")],
    "pg_catalog.pg_statistic_ext": [
        ("oid", "oid"), ("stxrelid", "oid"), ("stxname", "name"), ("stxnamespace", "oid"), ("stxowner", "oid"),
        ("stxstattarget", "int2"), ("stxkeys", "int2[]"), ("stxkind", "char[]"), ("stxexprs", "text")],
    "pg_catalog.pg_publication": [
        ("oid", "oid"), ("pubname", "name"), ("pubowner", "oid"), ("puballtables", "bool"), ("pubinsert", "bool"),
        ("pubupdate", "bool"), ("pubdelete", "bool"), ("pubtruncate", "bool"), ("pubviaroot", "bool")],
    "pg_catalog.pg_publication_namespace": [
        ("oid", "oid"), ("pnpubid", "oid"), ("pnnspid", "oid")],
    "pg_catalog.pg_publication_rel": [
        ("oid", "oid"), ("prpubid", "oid"), ("prrelid", "oid"), ("prqual", "text"), ("prattrs", "int2[]")],
    "pg_catalog.pg_inherits": [
        ("inhrelid", "oid"), ("inhparent", "oid"), ("inhseqno", "int2"), ("inhdetachpending", "bool")],
    "pg_catalog.pg_tablespace": [
        ("oid", "oid"), ("spcname", "name"), ("spcowner", "oid"), ("spcacl", "text[]"), ("spcoptions", "text[]")],
    "pg_catalog.pg_settings": [
        ("name", "text"), ("setting", "text"), ("unit", "text"), ("category", "text"), ("short_desc", "text"),
        ("extra_desc", "text"), ("context", "text"), ("vartype", "text"), ("source", "text"), ("min_val", "text"),
        ("max_val", "text"), ("enumvals", "text[]"), ("boot_val", "text"), ("reset_val", "text"),
        ("sourcefile", "text"), ("sourceline", "int4"), ("pending_restart", "bool")],
    "pg_catalog.pg_sequence": [
        ("seqrelid", "oid"), ("seqtypid", "oid"), ("seqstart", "int8"), ("seqincrement", "int8"), ("seqmax", "int8"),
        ("seqmin", "int8"), ("seqcache", "int8"), ("seqcycle", "bool")],
    "pg_catalog.pg_auth_members": [
        ("oid", "oid"), ("roleid", "oid"), ("member", "oid"), ("grantor", "oid"), ("admin_option", "bool"),
        ("inherit_option", "bool"), ("set_option", "bool")],
    "pg_catalog.pg_proc": [
        ("oid", "oid"), ("proname", "name"), ("pronamespace", "oid"), ("proowner", "oid"), ("prolang", "oid"),
        ("procost", "float4"), ("prorows", "float4"), ("provariadic", "oid"), ("prosupport", "oid"),
        ("prokind", "char"),
        ("prosecdef", "bool"), ("proleakproof", "bool"), ("proisstrict", "bool"), ("proretset", "bool"),
        ("provolatile", "char"), ("proparallel", "char"), ("pronargs", "int2"), ("pronargdefaults", "int2"),
        ("prorettype", "oid"), ("proargtypes", "oidvector"), ("proallargtypes", "oid[]"), ("proargmodes", "char[]"),
        ("proargnames", "text[]"), ("proargdefaults", "text"), ("protrftypes", "oid[]"), ("prosrc", "text"),
        ("probin", "text"), ("prosqlbody", "text"), ("proconfig", "text[]"), ("proacl", "text[]")],
    "information_schema.schemata": [
        ("catalog_name", "text"), ("schema_name", "text"), ("schema_owner", "text"),
        ("default_character_set_catalog", "text"), ("default_character_set_schema", "text"),
        ("default_character_set_name", "text"), ("sql_path", "text")],
    "information_schema.tables": [
        ("table_catalog", "text"), ("table_schema", "text"), ("table_name", "text"), ("table_type", "text"),
        ("self_referencing_column_name", "text"), ("reference_generation", "text"),
        ("user_defined_type_catalog", "text"), ("user_defined_type_schema", "text"),
        ("user_defined_type_name", "text"), ("is_insertable_into", "text"), ("is_typed", "text"),
        ("commit_action", "text")],
    "information_schema.columns": [
        ("table_catalog", "text"), ("table_schema", "text"), ("table_name", "text"), ("column_name", "text"),
        ("ordinal_position", "int4"), ("column_default", "text"), ("is_nullable", "text"), ("data_type", "text"),
        ("character_maximum_length", "int4"), ("character_octet_length", "int4"), ("numeric_precision", "int4"),
        ("numeric_precision_radix", "int4"), ("numeric_scale", "int4"), ("datetime_precision", "int4"),
        ("interval_type", "text"), ("interval_precision", "int4"), ("character_set_catalog", "text"),
        ("character_set_schema", "text"), ("character_set_name", "text"), ("collation_catalog", "text"),
        ("collation_schema", "text"), ("collation_name", "text"), ("domain_catalog", "text"),
        ("domain_schema", "text"), ("domain_name", "text"), ("udt_catalog", "text"), ("udt_schema", "text"),
        ("udt_name", "text"), ("scope_catalog", "text"), ("scope_schema", "text"), ("scope_name", "text"),
        ("maximum_cardinality", "int4"), ("dtd_identifier", "text"), ("is_self_referencing", "text"),
        ("is_identity", "text"), ("identity_generation", "text"), ("identity_start", "text"),
        ("identity_increment", "text"), ("identity_maximum", "text"), ("identity_minimum", "text"),
        ("identity_cycle", "text"), ("is_generated", "text"), ("generation_expression", "text"),
        ("is_updatable", "text")],
    "information_schema.views": [
        ("table_catalog", "text"), ("table_schema", "text"), ("table_name", "text"), ("view_definition", "text"),
        ("check_option", "text"), ("is_updatable", "text"), ("is_insertable_into", "text"),
        ("is_trigger_updatable", "text"), ("is_trigger_deletable", "text"), ("is_trigger_insertable_into", "text")],
    "information_schema.table_constraints": [
        ("constraint_catalog", "text"), ("constraint_schema", "text"), ("constraint_name", "text"),
        ("table_catalog", "text"), ("table_schema", "text"), ("table_name", "text"), ("constraint_type", "text"),
        ("is_deferrable", "text"), ("initially_deferred", "text"), ("enforced", "text"), ("nulls_distinct", "text")],
    "information_schema.key_column_usage": [
        ("constraint_catalog", "text"), ("constraint_schema", "text"), ("constraint_name", "text"),
        ("table_catalog", "text"), ("table_schema", "text"), ("table_name", "text"), ("column_name", "text"),
        ("ordinal_position", "int4"), ("position_in_unique_constraint", "int4")],
    "pg_catalog.pg_range": [
        ("rngtypid", "oid"), ("rngsubtype", "oid"), ("rngmultitypid", "oid"), ("rngcollation", "oid"),
        ("rngsubopc", "oid"), ("rngcanonical", "oid"), ("rngsubdiff", "oid")],
    "pg_catalog.pg_enum": [("oid", "oid"), ("enumtypid", "oid"), ("enumsortorder", "float4"), ("enumlabel", "name")],
    "pg_catalog.pg_tables": [
        ("schemaname", "name"), ("tablename", "name"), ("tableowner", "name"), ("tablespace", "name"),
        ("hasindexes", "bool"), ("hasrules", "bool"), ("hastriggers", "bool"), ("rowsecurity", "bool")],
}

_I, _T, _OID = pa.int64(), pa.string(), pa.uint32()
ARROW: dict[str, pa.DataType] = {
    "oid": _OID, "int2": _I, "int4": _I, "int8": _I, "float4": pa.float64(), "bool": pa.bool_(), "name": _T,
    "char": _T, "text": _T, "int2vector": pa.list_(_I), "oidvector": pa.list_(_OID),
    "oid[]": pa.list_(_OID), "int2[]": pa.list_(_I), "text[]": pa.list_(_T),
    "char[]": pa.list_(_T),
}
OIDS: dict[str, int] = {
    "oid": 26, "int2": 21, "int4": 23, "int8": 20, "float4": 700, "bool": 16, "name": 19, "char": 18, "text": 25,
    "int2vector": 22, "oidvector": 30, "oid[]": 1028, "int2[]": 1005, "text[]": 1009, "char[]": 1002,
}
