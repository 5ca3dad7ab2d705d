"""kill -9 a process that creates and drops vector indexes while their builds run: reopening gives back
exactly the acknowledged index definitions (plus, at most, the one commit in flight), index files only for
live (index, sealed segment) pairs, no temporary files, and no rebuild of a file that was complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage import Store
from storage.segment_index import index_file_name, parse_index_file_name

WRITER = Path(__file__).with_name("crash_index_writer.py")
WAIT = 60.0


def _run_and_kill(path: Path, round_no: int, min_commits: int, log: Path) -> list[str]:
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(round_no)],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout.readline().strip() == "ready", log.read_text()
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while lines.count("ok") < min_commits and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Read the rest through the same buffered reader: communicate() would read the pipe itself and lose
    # what readline() already buffered. A torn last line was never printed whole.
    rest = proc.stdout.read()
    proc.stdout.close()
    lines += [ln for ln in rest.split("\n")[:-1] if ln]
    assert lines.count("ok") >= min_commits, log.read_text()
    return lines


def _replay(lines: list[str], names: set[str]) -> tuple[set[str], tuple[str, str] | None]:
    """The index names after the acknowledged commits, and the commit in flight at the kill, if any."""
    pending = None
    for line in lines:
        if line == "ok":
            op, name = pending
            if op == "C":
                names.add(name)
            elif op == "X":
                names.discard(name)
            pending = None
        elif line.startswith("intent "):
            _, op, name = line.split()
            pending = (op, name)
    return names, pending


def test_kill_9_keeps_exactly_the_committed_indexes(tmp_path):
    names: set[str] = set()
    for round_no in range(3):
        lines = _run_and_kill(tmp_path / "data", round_no, min_commits=25 + 10 * round_no,
                              log=tmp_path / f"stderr-{round_no}.txt")
        names, in_flight = _replay(lines, names)
        folder = tmp_path / "data" / "tables" / "16400"
        complete = {p.name for p in folder.glob("idx-*.vidx")} if folder.exists() else set()

        store = Store.open(tmp_path / "data", seal_rows=60, fsync=True, growing_index_rows=30, index_build_threads=1)
        got = {i.name for i in store.catalog["docs"].indexes}
        if got != names:
            # Only the commit in flight may have become durable without being acknowledged.
            assert in_flight is not None and in_flight[0] in "CX", (got, names, in_flight)
            op, name = in_flight
            assert got == (names | {name} if op == "C" else names - {name}), (got, names, in_flight)
            names = got
        assert store.wait_for_indexes("docs", timeout=WAIT)
        state = store.snapshot()
        table = state.catalog["docs"]
        segnos = [s.segno for s in state.segments("docs") if s.sealed]
        expected = {index_file_name(i.oid, n) for i in table.indexes for n in segnos}
        on_disk = {p.name for p in folder.iterdir() if parse_index_file_name(p.name)}
        assert on_disk == expected
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        # Files that were complete at the kill (and still wanted) were loaded, not built again.
        assert store.index_builds == len(expected - complete)
        assert all(s.error is None for s in store.index_status())
        store.close()
