"""A local journal in front of a SQLite table: each process appends its writes to a file of its
own, and they reach the table in batches, off the request path.

A logged level-3 prediction is a SQLite commit before the answer: ~45 us of SQLite's own per
request (one WAL append of a page per table and index it touches), a third of a one-ride
request at the framework's speed. Appending the same rows to a file as one line costs ~1 us.
The line is written with one ``write(2)`` before the request is answered; once that returns,
the bytes are the file's and a SIGKILL of the process cannot take them back. That is the
guarantee a WAL commit with ``synchronous=NORMAL`` gives (the state database's setting): both
survive the process, neither a power cut. So "answered => logged" holds.

"Exactly once" holds at the table: :func:`ingest` inserts a file's complete lines past the
offset it last reached, in one transaction per chunk, and then records the new offset (in a
file beside the journal file). The rows carry unique ids and the insert ignores an id already
there, so a crash between the commit and the offset only makes the next pass skip rows it
finds. A line is whole or absent: a short write is cut off again before the request fails, and
bytes after a sealed file's last newline are a write that never returned, so never answered.
What cannot become rows (those bytes, a line that does not parse, rows the table refuses) is
moved to a quarantine file and logged as an error: kept, never retried forever.

Each writer holds an ``flock`` on its open file: a file nobody holds is sealed (its process
closed it or died) and is deleted once ingested. Every reader of the table ingests first (so a
reader on this machine sees every answered row), and a thread in each writing process ingests
every ``interval_s``. One SQLite file is on one machine, so one journal directory serves every
process that writes the table.
"""

from __future__ import annotations

import fcntl
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc

from shared.statedb.database import StateUnavailable
from shared.statedb.process_thread import ProcessThread, outside_fork

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"
#: a file is sealed and a new one begun past this size, so ingested files can be deleted
ROTATE_BYTES = 32 << 20
#: rows per ingest transaction (~10 ms of SQLite's time)
CHUNK_ROWS = 2_000
INTERVAL_S = 0.2
THREAD_NAME = "journal-ingest"
_LOCK_NAME = ".ingest.lock"
#: lines that could not become rows, kept for a person (and logged as errors)
QUARANTINE = "quarantine.bad"

Rows = list[dict[str, Any]]
Writer = Callable[[Rows], None]
Order = Callable[[Rows], float]
#: a line in a pass: (its order key, its file's index, the offset past it, its bytes, its rows)
_Line = tuple[float, int, int, bytes, "Rows | None"]


#: the files this process holds locked (its journal files, a pass's lock): a forked child
#: closes its copies at once, which would otherwise hold the locks (an flock belongs to the
#: open file, which fork() shares) for as long as the child lives
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_HELD):
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def _close(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)


class Journal:
    """This process's appends (a file per process, opened on the first append after fork)."""

    def __init__(self, directory: Path, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self._pid = 0
        self._fd = -1
        self._size = 0
        self._guard = threading.Lock()

    def append(self, rows: Rows) -> None:
        """``rows`` as one line, in the file once this returns; :class:`StateUnavailable`
        (and nothing written) when the file cannot take it."""
        line = orjson.dumps(rows, option=orjson.OPT_APPEND_NEWLINE)
        with self._guard:
            try:
                fd = self._file()
                written = os.write(fd, line)
            except OSError as exc:
                self._cut_back()
                raise StateUnavailable(f"prediction journal {self.directory}: {exc}") from exc
            if written != len(line):  # a full disk: the part written must not become a line
                self._cut_back()
                raise StateUnavailable(f"prediction journal {self.directory}: disk full")
            self._size += written

    def close(self) -> None:
        """Seal this process's file (the next append opens a new one)."""
        with self._guard:
            if self._fd >= 0 and self._pid == os.getpid():
                _close(self._fd)
            self._fd, self._pid = -1, 0

    def _file(self) -> int:
        if self._pid != os.getpid():  # fork(): the parent's file, which the child closed
            self._fd, self._pid = -1, os.getpid()
        elif self._fd >= 0 and self._size >= self.rotate_bytes:
            _close(self._fd)
            self._fd = -1
        if self._fd < 0:
            self._fd, self._size = _create_locked(self.directory), 0
        return self._fd

    def _cut_back(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            with suppress(OSError):
                os.ftruncate(self._fd, self._size)


def _create_locked(directory: Path) -> int:
    """A new journal file, locked before it has its name: an ingester that sees the name
    always finds it held, so never takes a live file for a sealed one."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
    hidden = directory / f".{name}.new"
    fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
    _HELD.add(fd)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(hidden, directory / name)
    return fd


def ingest(directory: Path, write: Writer, *, wait: bool = True, order: Order | None = None) -> int:
    """Every journal file's new complete lines into the table (``write`` commits one chunk of
    rows, ignoring ids already there); sealed files are deleted once ingested. ``order``: the
    lines of all files are merged by it (a line's rows -> a sortable key, e.g. their time), each
    file's own order kept, so the table's insertion order follows it across processes. One pass
    at a time per directory: ``wait=False`` returns 0 at once when another pass is running.
    Returns the rows ingested."""
    if not directory.is_dir():
        return 0
    with _pass_lock(directory, wait) as running:
        if not running:
            return 0
        sources = [_Source.open(path) for path in sorted(directory.glob(f"*{SUFFIX}"))]
        try:
            count = _ingest_merged(directory, sources, write, order)
            for source in sources:
                source.retire_if_sealed()
            return count
        finally:
            for source in sources:
                os.close(source.fd)


@contextmanager
def _pass_lock(directory: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        _close(fd)  # releases the lock


@dataclass
class _Source:
    """One journal file in a pass: how far it is ingested, and whether its writer is gone."""

    path: Path
    fd: int
    sealed: bool
    offset: int

    @classmethod
    def open(cls, path: Path) -> _Source:
        fd = os.open(path, os.O_RDONLY)
        sealed = _unheld(fd)  # before reading: a sealed file grows no more
        return cls(path, fd, sealed, _read_offset(_offset_file(path)))

    def lines(self, index: int, order: Order | None) -> Iterator[_Line]:
        """(key, index, end offset, line, rows or None) for each complete line past the offset."""
        base = self.offset  # moves while the pass consumes these lines
        data = os.pread(self.fd, os.fstat(self.fd).st_size - base, base)
        end, start, key = data.rfind(b"\n") + 1, 0, 0.0
        while start < end:
            stop = data.index(b"\n", start) + 1
            line = data[start:stop]
            rows = _parsed(line)
            if rows and order is not None:
                with suppress(LookupError, TypeError, ValueError):  # not a row: file order
                    key = order(rows)
            yield key, index, base + stop, line, rows
            start = stop

    def moved_to(self, offset: int) -> None:
        self.offset = offset
        _write_offset(_offset_file(self.path), offset)

    def retire_if_sealed(self) -> None:
        if not self.sealed:
            return
        tail = os.pread(self.fd, os.fstat(self.fd).st_size - self.offset, self.offset)
        if tail:  # a write that never returned, so was never answered
            why = f"a write that never returned ({self.path.name})"
            _quarantine(self.path.parent, [tail + b"\n"], why)
        self.path.unlink()
        _offset_file(self.path).unlink(missing_ok=True)


def _offset_file(path: Path) -> Path:
    return path.with_name(path.name + ".offset")


def _ingest_merged(
    directory: Path, sources: list[_Source], write: Writer, order: Order | None
) -> int:
    """The sources' lines, merged by ``order`` (or file by file), ~CHUNK_ROWS rows a
    transaction; after each, every file's offset moves past its lines in it."""
    streams = [source.lines(i, order) for i, source in enumerate(sources)]
    merged = heapq.merge(*streams, key=lambda line: line[0]) if order else itertools.chain(*streams)
    count = rows = 0
    chunk: list[tuple[bytes, Rows | None]] = []
    ends: dict[int, int] = {}

    def commit() -> int:
        written = _write_lines(directory, chunk, write)
        for i, offset in ends.items():
            sources[i].moved_to(offset)
        return written

    for _key, index, end, line, parsed in merged:
        chunk.append((line, parsed))
        ends[index] = end
        rows += len(parsed or ())
        if rows >= CHUNK_ROWS:
            count += commit()
            chunk, ends, rows = [], {}, 0
    return count + (commit() if chunk else 0)


#: what a row (not the database) is to blame for: the row is kept aside, not retried forever
_ROW_ERRORS = (
    sa_exc.IntegrityError,
    sa_exc.DataError,
    sa_exc.InterfaceError,
    KeyError,
    TypeError,
    ValueError,
)


def _write_lines(directory: Path, lines: list[tuple[bytes, Rows | None]], write: Writer) -> int:
    """A chunk's rows in one transaction; when the table refuses it, line by line. A line that
    does not parse, or whose rows the table refuses, goes to the quarantine file (and the
    log): kept for a person to look at, never retried forever, never silently gone."""
    good = [(line, rows) for line, rows in lines if rows is not None]
    bad = [line for line, rows in lines if rows is None]
    try:
        write([row for _, rows in good for row in rows])
        written = sum(len(rows) for _, rows in good)
    except _ROW_ERRORS:
        written = 0
        for line, rows in good:
            try:
                write(rows)
                written += len(rows)
            except _ROW_ERRORS:
                bad.append(line)
    if bad:
        _quarantine(directory, bad, "lines the table refused or that do not parse")
    return written


def _quarantine(directory: Path, lines: list[bytes], why: str) -> None:
    target = directory / QUARANTINE
    with target.open("ab") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    logger.error("%s: %d %s, kept in %s", directory, len(lines), why, target)


def _unheld(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _parsed(line: bytes) -> Rows | None:
    try:
        rows = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    return rows


def _read_offset(path: Path) -> int:
    try:
        return int(path.read_text())
    except FileNotFoundError:
        return 0


def _write_offset(path: Path, offset: int) -> None:
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(str(offset))
    os.replace(fresh, path)


class Ingester(ProcessThread):
    """A thread per writing process that runs :func:`ingest` every ``interval_s``. A pass that
    fails logs and is tried again: the rows wait in the journal, and every reader ingests
    before it reads."""

    def __init__(
        self,
        directory: Path,
        write: Writer,
        interval_s: float = INTERVAL_S,
        order: Order | None = None,
    ) -> None:
        super().__init__(f"{THREAD_NAME} {directory}")
        self.directory = directory
        self.write = write
        self.interval_s = interval_s
        self.order = order

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                with outside_fork():
                    ingest(self.directory, self.write, wait=False, order=self.order)
            except Exception:  # the thread must outlive a database outage
                logger.warning("ingesting %s failed (will retry)", self.directory, exc_info=True)
