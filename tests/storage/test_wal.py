"""WAL format and recovery: a table of damaged logs, each giving one fixed outcome."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from storage_testing import rows, table_schema

from storage import CorruptionError, CreateTable, Insert, Store
from storage.wal import HEADER, MAGIC, WalWriter, list_wal_files, recover


def _write(wal_dir: Path, payloads: list[bytes], *, first_lsn: int = 1, segment_bytes: int = 1 << 20):
    w = WalWriter(wal_dir, first_lsn, segment_bytes=segment_bytes, fsync=False)
    w.append((first_lsn + i, 1, [p]) for i, p in enumerate(payloads))
    w.close()


def _offsets(path: Path) -> list[int]:
    data, off, out = path.read_bytes(), 0, []
    while off < len(data):
        out.append(off)
        off += HEADER.size + struct.unpack_from("<Q", data, off + 8)[0]
    return out


def test_header_layout():
    assert HEADER.size == 32 and MAGIC == b"SVWL"


def test_clean_log_round_trip(tmp_path):
    _write(tmp_path, [b"a", b"", b"ccc" * 100])
    rec = recover(tmp_path)
    assert [(r.lsn, bytes(r.payload)) for r in rec.records] == [(1, b"a"), (2, b""), (3, b"ccc" * 100)]
    assert rec.last_lsn == 3 and not rec.repaired


def test_rotation_and_removal(tmp_path):
    w = WalWriter(tmp_path, 1, segment_bytes=100, fsync=False)
    for lsn in range(1, 11):
        w.append([(lsn, 1, [b"x" * 80])])
    w.sync()
    files = list_wal_files(tmp_path)
    assert len(files) == 10 and [f for f, _ in files] == list(range(1, 11))
    w.remove_before(6)
    assert [f for f, _ in list_wal_files(tmp_path)] == list(range(6, 11))
    w.remove_before(100)  # never the current file
    assert [f for f, _ in list_wal_files(tmp_path)] == [10]
    w.close()
    assert [r.lsn for r in recover(tmp_path).records] == [10]


def _damage(path: Path, how: str) -> int:
    """Damage the WAL file; returns the offset recovery should report or cut at."""
    data = bytearray(path.read_bytes())
    offs = _offsets(path)
    if how == "truncate_tail":
        path.write_bytes(data[:-3])
        return offs[-1]
    if how == "truncate_header":
        path.write_bytes(data[:offs[-1] + 10])
        return offs[-1]
    if how == "zero_tail":
        path.write_bytes(bytes(data) + bytes(100))
        return len(data)
    if how in ("garble_last", "garble_middle"):
        at = offs[-1] if how == "garble_last" else offs[1]
        data[at + HEADER.size] ^= 0xFF
        path.write_bytes(bytes(data))
        return at
    if how == "bad_magic_middle":
        data[offs[1]] ^= 0x01
        path.write_bytes(bytes(data))
        return offs[1]
    if how == "garble_length_middle":
        data[offs[1] + 8] ^= 0x04
        path.write_bytes(bytes(data))
        return offs[1]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncate_tail", "truncate_header", "zero_tail", "garble_last"])
def test_torn_tail_is_cut_and_kept(tmp_path, how):
    _write(tmp_path, [b"one", b"two" * 10, b"three" * 20])
    path = list_wal_files(tmp_path)[0][1]
    original = path.read_bytes() if how != "zero_tail" else None
    cut = _damage(path, how)
    damaged = path.read_bytes()
    rec = recover(tmp_path)
    expect = 3 if how == "zero_tail" else 2
    assert [r.lsn for r in rec.records] == list(range(1, expect + 1))
    (rep,) = rec.repaired
    assert rep.offset == cut and path.stat().st_size == cut
    assert rep.copy.read_bytes() == damaged and rep.copy.name.startswith(path.name + ".torn-")
    assert original is None or original[:cut] == path.read_bytes()
    again = recover(tmp_path)  # the repair is complete: nothing left to repair
    assert not again.repaired and len(again.records) == expect


@pytest.mark.parametrize("how", ["garble_middle", "bad_magic_middle", "garble_length_middle"])
def test_damage_in_the_middle_is_refused(tmp_path, how):
    _write(tmp_path, [b"one", b"two" * 10, b"three" * 20, b"four"])
    path = list_wal_files(tmp_path)[0][1]
    at = _damage(path, how)
    before = path.read_bytes()
    with pytest.raises(CorruptionError) as e:
        recover(tmp_path)
    assert e.value.path == str(path) and e.value.offset == at
    assert path.read_bytes() == before  # nothing repaired
    assert not list(tmp_path.glob("*.torn-*"))


def test_damage_in_a_file_that_is_not_the_last(tmp_path):
    _write(tmp_path, [b"x" * 50] * 4, segment_bytes=100)
    files = list_wal_files(tmp_path)
    assert len(files) == 2
    _damage(files[0][1], "garble_last")
    with pytest.raises(CorruptionError, match="later WAL files follow") as e:
        recover(tmp_path)
    assert e.value.path == str(files[0][1])


def test_missing_file_and_lsn_gap(tmp_path):
    _write(tmp_path, [b"x" * 50] * 6, segment_bytes=100)
    files = list_wal_files(tmp_path)
    files[1][1].unlink()
    with pytest.raises(CorruptionError, match="expected"):
        recover(tmp_path)

    other = tmp_path / "gap"
    other.mkdir()
    w = WalWriter(other, 1, segment_bytes=1 << 20, fsync=False)
    w.append([(1, 1, [b"a"]), (3, 1, [b"b"])])  # valid checksums, LSN 2 missing
    w.close()
    with pytest.raises(CorruptionError, match="LSN 3, expected 2") as e:
        recover(other)
    assert e.value.offset == HEADER.size + 1


def _store_with_commits(path, n):
    store = Store.open(path, seal_rows=1000, fsync=True)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    for i in range(n):
        store.commit([Insert("t", rows(schema, [i]))])
    store.close()
    return list_wal_files(path / "wal")[-1][1]


@pytest.mark.parametrize("how", ["truncate_tail", "garble_last"])
def test_store_drops_torn_last_commit(tmp_path, how):
    wal = _store_with_commits(tmp_path, 5)
    _damage(wal, how)
    store = Store.open(tmp_path, seal_rows=1000, fsync=True)
    assert sorted(store.snapshot().scan("t", ["id"]).column("id").to_pylist()) == [0, 1, 2, 3]
    assert len(store.repaired_wal) == 1 and list((tmp_path / "wal").glob("*.torn-*"))
    store.commit([Insert("t", rows(table_schema(), [4]))])  # appends after the cut
    store.close()
    store = Store.open(tmp_path, seal_rows=1000, fsync=True)
    assert store.snapshot().count("t") == 5
    store.close()


def test_store_refuses_damage_in_the_middle(tmp_path):
    wal = _store_with_commits(tmp_path, 5)
    at = _damage(wal, "garble_middle")
    with pytest.raises(CorruptionError) as e:
        Store.open(tmp_path, seal_rows=1000, fsync=True)
    assert e.value.path == str(wal) and e.value.offset == at
    assert f"{wal} at offset {at}" in str(e.value)
    # The refusal released the directory and changed nothing: it fails the same way again.
    with pytest.raises(CorruptionError):
        Store.open(tmp_path, seal_rows=1000, fsync=True)


def test_damaged_segment_file_is_reported(tmp_path):
    store = Store.open(tmp_path, seal_rows=2, fsync=False)
    schema = table_schema()
    store.commit([CreateTable(schema)])
    store.commit([Insert("t", rows(schema, range(2)))])
    seg = tmp_path / "tables" / str(store.catalog["t"].oid) / "seg-000001.arrow"
    store.close()
    seg.write_bytes(seg.read_bytes()[:40])
    with pytest.raises(CorruptionError) as e:
        Store.open(tmp_path, seal_rows=2, fsync=False)
    assert e.value.path == str(seg)
