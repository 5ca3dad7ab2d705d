"""A reference PostgreSQL + pgvector server started from ``pgserver``: for the ``pg_compatible`` tests
and as the peer of ``sqlvec bench --peer pgserver``.

The ``pgserver`` package (the ``pgref`` extra: ``pip install -e '.[pgref]'``) ships PostgreSQL 16 with
pgvector built in, under ``pgserver/pginstall``. Its own Python API is not used: PostgreSQL refuses to
run as root (as this project's machines and CI do), so the bundled ``initdb`` and ``postgres`` binaries
are run here directly, as an unprivileged user when we are root (``SQLVEC_TEST_PG_USER``, default
``nobody``), listening on 127.0.0.1 only, on a free port, in a temporary directory owned by that user.

The server gets a superuser ``postgres`` (trust authentication) and a database ``sqlvec`` with
``CREATE EXTENSION vector`` already run, so the tests' DSN (``user=postgres dbname=sqlvec``) works as is.

Nothing here imports ``pgserver``: the package is only located, so this module costs nothing when unused.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_USER = "nobody"


class ReferenceServerError(RuntimeError):
    pass


def pg_bin_dir() -> Path:
    """The ``pginstall/bin`` folder inside the installed ``pgserver`` package."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceServerError(
            "SQLVEC_TEST_PG=pgserver needs the pgserver package: pip install -e '.[pgref]'")
    for loc in spec.submodule_search_locations:
        bin_dir = Path(loc) / "pginstall" / "bin"
        if (bin_dir / "postgres").exists() and (bin_dir / "initdb").exists():
            return bin_dir
    raise ReferenceServerError(f"no pginstall/bin with initdb and postgres in {list(spec.submodule_search_locations)}")


def has_pgvector(bin_dir: Path) -> bool:
    return (bin_dir.parent / "share" / "postgresql" / "extension" / "vector.control").exists()


def _run_as(user: pwd.struct_passwd | None) -> dict:
    """subprocess keyword arguments that drop root for the user (nothing when we are not root)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _target_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SQLVEC_TEST_PG_USER", DEFAULT_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ReferenceServerError(
            f"PostgreSQL will not run as root and there is no user {name!r}: create one "
            f"(useradd --system {name}) or set SQLVEC_TEST_PG_USER") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ReferenceServer:
    host: str
    port: int
    root: Path
    proc: subprocess.Popen
    bin_dir: Path
    log_path: Path
    pgvector: bool
    _log: object = field(repr=False, default=None)

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user=postgres dbname=sqlvec"

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as c:
            pg = c.execute("SHOW server_version").fetchone()[0]
            vec = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return f"PostgreSQL {pg}" + (f", pgvector {vec[0]}" if vec else ", no pgvector")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL; then remove the temporary directory."""
        try:
            for sig, wait in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
                if self.proc.poll() is not None:
                    break
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if self._log is not None:
                self._log.close()
            shutil.rmtree(self.root, ignore_errors=True)


def start(*, attempts: int = 3, durable: bool = False) -> ReferenceServer:
    """Start PostgreSQL + pgvector from pgserver's binaries; the caller must ``stop()`` it.

    Tests run it with fsync off; ``durable=True`` keeps PostgreSQL's defaults (fsync and
    synchronous commit on), as a benchmark baseline against sqlvec's fsynced commits needs.
    """
    bin_dir = pg_bin_dir()
    user = _target_user()
    as_user = _run_as(user)
    root = Path(tempfile.mkdtemp(prefix="sqlvec-pgref-"))
    try:
        data = root / "data"
        log_path = root / "postgres.log"
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        if user is not None:
            env["HOME"] = str(root)
        r = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-locale", "--no-sync"],
            cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, **as_user)
        if r.returncode != 0:
            raise ReferenceServerError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

        last_error = ""
        for _ in range(attempts):
            port = _free_port()
            log = open(log_path, "ab")
            if user is not None:
                os.chown(log_path, user.pw_uid, user.pw_gid)
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                 "-k", str(root), "-c", "max_connections=100",
                 *([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                       "-c", "full_page_writes=off"])],
                cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **as_user)
            srv = ReferenceServer("127.0.0.1", port, root, proc, bin_dir, log_path, has_pgvector(bin_dir), log)
            if _wait_ready(srv, timeout=60):
                try:
                    _bootstrap(srv)
                except BaseException:
                    srv.stop()
                    raise
                atexit.register(srv.stop)  # in case the caller never gets to stop it; stop() is idempotent
                return srv
            last_error = srv.log_tail()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()
        raise ReferenceServerError(f"PostgreSQL did not start in {attempts} attempts:\n{last_error}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _wait_ready(srv: ReferenceServer, timeout: float) -> bool:
    import psycopg

    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.proc.poll() is not None:
            return False
        try:
            with psycopg.connect(f"host={srv.host} port={srv.port} user=postgres dbname=postgres",
                                 connect_timeout=2):
                return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    return False


def _bootstrap(srv: ReferenceServer) -> None:
    """Database ``sqlvec`` (the tests' DSN names it) with pgvector installed, as sqlvec has it built in."""
    import psycopg

    with psycopg.connect(f"host={srv.host} port={srv.port} user=postgres dbname=postgres",
                         autocommit=True) as c:
        c.execute("CREATE DATABASE sqlvec")
    if srv.pgvector:
        with psycopg.connect(srv.dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector")


if __name__ == "__main__":  # manual use: start one, print its DSN, stop on Ctrl-C (--durable: fsync on)
    import sys

    s = start(durable="--durable" in sys.argv)
    print(s.version())
    print(s.dsn, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
