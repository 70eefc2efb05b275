"""CPU time spent serving a load run, read from ``/proc`` (Linux): the gunicorn workers'
and the database server's.

Throughput on a small machine mixes every process sharing its cores (the workers, the
database, the load generator); CPU per request separates them. The database server is
found by its process name, which is only meaningful because every target of these
benchmarks is on loopback: the server is on this host. Elsewhere (no ``/proc``) the meter
reads nothing and the figures are left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Process names of the database servers, per backend of the server sections.
SERVER_NAMES = {"postgresql": ("postgres",), "mariadb": ("mariadbd", "mysqld")}

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # after "pid (comm)": state ppid ... utime is field 14, stime 15 (1-based, stat(5))
    return (int(fields[11]) + int(fields[12])) / _TICK


def _processes() -> list[tuple[int, int, str]]:
    """``(pid, ppid, name)`` of every process that can be read."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                head, _, rest = stat.read().rpartition(")")
        except OSError:
            continue
        found.append((int(entry), int(rest.split()[1]), head.partition("(")[2]))
    return found


@dataclass
class CpuReading:
    """CPU seconds so far of the workers and of the database server."""

    workers: float
    database: float


class CpuMeter:
    """Reads the CPU of the children of a gunicorn master and of a backend's server."""

    def __init__(self, master_pid: int, backend: str) -> None:
        self.available = os.path.isdir("/proc") and os.path.exists(f"/proc/{master_pid}/stat")
        self._master = master_pid
        self._server_names = SERVER_NAMES.get(backend, ())

    def read(self) -> CpuReading | None:
        if not self.available:
            return None
        processes = _processes()
        workers = [pid for pid, ppid, _name in processes if ppid == self._master]
        servers = [pid for pid, _ppid, name in processes if name in self._server_names]
        return CpuReading(
            workers=sum(_cpu_seconds(pid) or 0.0 for pid in workers),
            database=sum(_cpu_seconds(pid) or 0.0 for pid in servers),
        )


def per_request_us(
    before: CpuReading | None, after: CpuReading | None, requests: int
) -> tuple[float, float] | None:
    """Worker and database CPU µs per request between two readings (None without them)."""
    if before is None or after is None or requests <= 0:
        return None
    return (
        (after.workers - before.workers) / requests * 1e6,
        (after.database - before.database) / requests * 1e6,
    )


def _my_client_ports() -> set[int]:
    """Local TCP ports of this process's sockets (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


class ServingThreadsMeter:
    """CPU seconds of the database server threads serving **this process's** connections
    (Linux, a server on this host): a PostgreSQL backend process per connection, a MariaDB
    thread per connection. Unlike :class:`CpuMeter`'s whole-server figure, it leaves out
    the server's work for everyone else, so a store's own server-side cost can be read
    while other programs use the same server (it also leaves out the server's background
    work: WAL writer, checkpoints, purge threads).

    ``admin`` is a driver connection of this process used only to look the others up
    (excluded). :meth:`resolve` finds the threads of the connections open now; call it
    after a warm-up, when the connections a loop uses are open.
    """

    def __init__(self, backend: str, admin: object) -> None:
        self.backend = backend
        self.admin = admin
        self._paths: list[str] = []

    def resolve(self) -> int:
        """Find the serving threads of this process's connections; how many were found."""
        ports = _my_client_ports()
        cursor = self.admin.cursor()  # type: ignore[attr-defined]
        if self.backend == "postgresql":
            cursor.execute("SELECT client_port, pid FROM pg_stat_activity "
                           "WHERE client_port IS NOT NULL AND pid <> pg_backend_pid()")
            self._paths = [f"/proc/{pid}/stat" for port, pid in cursor.fetchall()
                           if port in ports]
        else:  # MariaDB 10.5+: the OS thread id of every connection
            cursor.execute("SELECT HOST, TID FROM information_schema.PROCESSLIST "
                           "WHERE ID <> CONNECTION_ID()")
            servers = [pid for pid, _ppid, name in _processes()
                       if name in SERVER_NAMES["mariadb"]]
            self._paths = [
                f"/proc/{servers[0]}/task/{tid}/stat" for host, tid in cursor.fetchall()
                if servers and host and ":" in host and int(host.rpartition(":")[2]) in ports
            ]
        cursor.close()
        return len(self._paths)

    def read(self) -> float:
        """CPU seconds so far of the resolved threads (a thread gone since counts 0)."""
        total = 0.0
        for path in self._paths:
            try:
                with open(path, encoding="ascii", errors="replace") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _TICK
        return total
