"""A private MariaDB server for one test, which the test may stop, kill and restart.

The shared server (``tests.support.mysql``, 127.0.0.1:3306) serves every test and
process on the machine, so no test may stop it. ``MariaDBInstance`` runs a server of
its own instead: a data directory made by ``mariadb-install-db`` under a tmp path,
``mariadbd`` on a free loopback port with small buffers and full durability
(``innodb_flush_log_at_trx_commit=1``, no binary log), root with an empty password
over TCP. ``stop`` shuts it down (SIGTERM), ``kill`` crashes it (SIGKILL: InnoDB
recovers at the next ``start``), ``pause``/``resume`` freeze and wake it (SIGSTOP,
SIGCONT), ``start`` brings it back on the same data directory and port. Leaving the
``with`` block kills the server and removes the directory.

The server is started through ``setpriv --pdeathsig KILL`` when ``setpriv`` exists, so
it dies with the test process even if that is SIGKILLed. Linux ties that signal to the
*thread* that started the server: call ``start`` from a thread that outlives it (the
test's main thread).

Missing binaries make ``require_binaries`` (and so a ``MariaDBInstance`` built without
explicit binaries) skip the test with the reason.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import MySQLdb
import pytest

from tests.support.mysql import TestDatabase

_SERVERS: Final = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld", "mariadbd", "mysqld")
_INSTALLERS: Final = (
    "/usr/bin/mariadb-install-db",
    "/usr/bin/mysql_install_db",
    "mariadb-install-db",
    "mysql_install_db",
)
#: Server options that keep a test server small, quick to start and durable.
_SERVER_OPTIONS: Final = (
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=1",
    "--skip-log-bin",
    "--skip-name-resolve",
    "--max-connections=50",
)
#: The longest Unix socket path the kernel takes (108 bytes with the final NUL).
_MAX_SOCKET_PATH: Final = 100
_START_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 60.0


class MariaDBStartError(RuntimeError):
    """The server did not come up (or install) in time; the message holds the log tail."""


@dataclass(frozen=True, slots=True)
class MariaDBBinaries:
    """The programs a private server needs."""

    server: Path
    install_db: Path


def _which(candidates: tuple[str, ...]) -> Path | None:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_binaries() -> MariaDBBinaries | None:
    """``mariadbd`` (or ``mysqld``) and ``mariadb-install-db`` (or ``mysql_install_db``),
    or None when either is missing."""
    server, install_db = _which(_SERVERS), _which(_INSTALLERS)
    if server is None or install_db is None:
        return None
    return MariaDBBinaries(server, install_db)


def require_binaries() -> MariaDBBinaries:
    """The binaries, or ``pytest.skip`` saying which are missing."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(
            "a private MariaDB server needs mariadbd (or mysqld) and mariadb-install-db "
            "(or mysql_install_db); install mariadb-server"
        )
    return binaries


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MariaDBInstance:
    """A private MariaDB server in ``root`` (a fresh directory is made there)."""

    def __init__(self, root: Path | None = None, binaries: MariaDBBinaries | None = None) -> None:
        """Nothing runs until ``__enter__`` (install and first start)."""
        self.binaries = binaries if binaries is not None else require_binaries()
        parent = Path(root) if root is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="mariadb-", dir=parent))
        self.datadir = self.directory / "data"
        self.socket = self.directory / "mysqld.sock"
        if len(str(self.socket)) > _MAX_SOCKET_PATH:  # a deep tmp path: socket elsewhere
            self._socket_dir: Path | None = Path(tempfile.mkdtemp(prefix="mdb-"))
            self.socket = self._socket_dir / "mysqld.sock"
        else:
            self._socket_dir = None
        self.pid_file = self.directory / "mysqld.pid"
        self.error_log = self.directory / "error.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = getpass.getuser()
        self._process: subprocess.Popen[bytes] | None = None
        self._setpriv = shutil.which("setpriv")

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MariaDBInstance:
        try:
            self.install()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def install(self) -> None:
        """Create the data directory (system tables, root without a password)."""
        command = [
            str(self.binaries.install_db),
            "--no-defaults",  # never the machine's my.cnf (port 3306, its datadir)
            f"--datadir={self.datadir}",
            f"--user={self.user}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_SERVER_OPTIONS,
        ]
        done = subprocess.run(  # noqa: S603 -- a fixed program, our own arguments
            command, capture_output=True, timeout=120, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
            raise MariaDBStartError(f"{command[0]} failed ({done.returncode}):\n{output}")

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id (None when it is not running)."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Start the server (same data directory and port) and wait until it answers."""
        if self.running:
            raise RuntimeError(f"the MariaDB server on port {self.port} is already running")
        command = [
            str(self.binaries.server),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--user={self.user}",
            *_SERVER_OPTIONS,
        ]
        if self._setpriv is not None:
            command = [self._setpriv, "--pdeathsig", "KILL", "--", *command]
        self._process = subprocess.Popen(  # noqa: S603 -- a fixed program, our own arguments
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_until_answering(timeout_s)

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Shut the server down cleanly (SIGTERM) and wait until it has exited."""
        self._signal_and_wait(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """Crash the server (SIGKILL) and wait until it is gone."""
        self._signal_and_wait(signal.SIGKILL, _STOP_TIMEOUT_S)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers, as
        with a hung server. ``resume`` wakes it; ``kill`` and cleanup work meanwhile,
        ``stop`` waits for ``resume``."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Wake a paused server (SIGCONT)."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        """Kill the server if it runs and remove its files."""
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    # ------------------------------------------------------------------ databases

    def connect(self, database: str | None = None, **options: Any) -> Any:
        """A new root connection over TCP (autocommit off)."""
        if database is not None:
            options["db"] = database
        return MySQLdb.connect(
            host=self.host, port=self.port, user="root", passwd="", charset="utf8mb4", **options
        )

    def database(self, name: str) -> TestDatabase:
        """``name`` on this server (created if missing), as a ``TestDatabase``."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database names here are A-Z a-z 0-9 _; got {name!r}")
        conn = self.connect()
        try:
            conn.cursor().execute(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        finally:
            conn.close()
        return TestDatabase(self.host, self.port, "root", "", name)

    def error_log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's error log."""
        try:
            text = self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no error log)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ internals

    def _signal_and_wait(self, signum: signal.Signals, timeout_s: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)  # setpriv execs the server: this pid is the server
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
            raise

    def _wait_until_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise MariaDBStartError(
                    f"mariadbd on port {self.port} exited ({code}) while starting; error log:\n"
                    + self.error_log_tail()
                )
            try:
                self.connect(connect_timeout=2).close()
            except MySQLdb.OperationalError as exc:
                last_error = str(exc)
                time.sleep(0.05)
                continue
            return
        self.kill()
        raise MariaDBStartError(
            f"mariadbd on port {self.port} did not answer within {timeout_s:.0f} s "
            f"({last_error}); error log:\n" + self.error_log_tail()
        )
