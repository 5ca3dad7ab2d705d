"""Every script in sql_examples/ runs through psql against a live server and prints what its
``.expected`` file says. Regenerate an expected file with SQLVEC_UPDATE_EXPECTED=1 after checking it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_server

EXAMPLES = sorted((ROOT / "sql_examples").glob("*.sql"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_sql_example(script: Path, tmp_path: Path):
    server = start_server(tmp_path / "data")
    try:
        out = subprocess.run(
            ["psql", "-X", "-a", "-h", server.host, "-p", str(server.port), "-U", "postgres", "-d", "sqlvec",
             "-v", "ON_ERROR_STOP=0", "-f", str(script)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=script.parent)
    finally:
        server.stop()
    got = out.stdout + ("" if not out.stderr else "\n-- stderr:\n" + out.stderr.replace(str(script), script.name))
    expected_file = script.with_suffix(".expected")
    if os.environ.get("SQLVEC_UPDATE_EXPECTED") == "1":
        expected_file.write_text(got)
    assert expected_file.exists(), f"missing {expected_file.name}"
    assert got == expected_file.read_text()
