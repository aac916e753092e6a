"""Engine setup and transactions.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts
with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy handler instead
of failing with "database is locked" when a read transaction upgrades.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("veritee_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode else "BEGIN")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL; None for in-memory databases."""
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


class _WriterLock:
    """One SQLite writer at a time, across threads and processes, woken at once.

    SQLite's own busy handler polls with sleeps of 1 to 100 ms, which under load
    from several workers turns contention into latency and idle cores. Threads
    queue on a lock, processes on an advisory ``flock`` of a file beside the
    database, so the next writer starts the moment the previous one commits.
    (The busy handler stays as the fallback for other programs.)
    """

    def __init__(self, path: Path) -> None:
        self._threads = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        os.close(self._fd)


class Tx:
    """A DBAPI cursor inside one transaction: the guest hot path's few statements.

    SQL is written once with ``?`` placeholders (PostgreSQL gets ``%s``); going
    around SQLAlchemy's statement building saves most of a request's database
    cost. Everything else uses the ORM.
    """

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self._cursor = cursor
        self.postgres = postgres

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        if self.postgres:
            sql = _pg_sql(sql)
        self._cursor.execute(sql, tuple(params))
        return self._cursor

    def one(self, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


_PG_SQL: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    cached = _PG_SQL.get(sql)
    if cached is None:
        cached = _PG_SQL[sql] = sql.replace("?", "%s")
    return cached


class Database:
    """One engine and its session factory; ``read()`` and ``write()`` open transactions."""

    def __init__(self, url: str) -> None:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # A replica must survive a database restart: test connections before use,
            # bound waits, and fail fast rather than hang on a dead server.
            kwargs.update(
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=10,
                pool_timeout=10,
                pool_recycle=1800,
                connect_args={"connect_timeout": 5},
            )
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _sqlite_setup(self.engine)
        self._writer = sessionmaker(
            bind=self.engine.execution_options(veritee_write=True), expire_on_commit=False
        )
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(veritee_write=True)
        self._write_lock: AbstractContextManager[object] = threading.Lock()
        if self.is_sqlite:
            file = _sqlite_file(url)
            if file is not None:
                self._write_lock = _WriterLock(file.with_name(file.name + ".writer-lock"))

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    def migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception.

        SQLite has one writer at a time; threads of this process queue on a lock
        (woken at once) rather than in SQLite's busy handler, which sleeps in
        coarse steps and turns contention into latency.
        """
        if self.is_sqlite:
            with self._write_lock, self._writer() as session, session.begin():
                yield session
        else:
            with self._writer() as session, session.begin():
                yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def tx(self, *, write: bool) -> Iterator[Tx]:
        """A raw transaction: committed on success, rolled back on any exception.

        Driver errors come out as SQLAlchemy's ``DBAPIError`` (what the service
        maps to 503), and a connection the server dropped is not pooled again.
        """
        lock: AbstractContextManager[object] = (
            self._write_lock if write and self.is_sqlite else nullcontext()
        )
        dialect = self.engine.dialect
        with lock:
            try:
                conn = self.engine.raw_connection()
            except dialect.loaded_dbapi.Error as exc:  # the server is away
                raise DBAPIError.instance(
                    None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
                ) from exc
            cursor = None
            try:
                cursor = conn.cursor()
                if self.is_sqlite:
                    cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield Tx(cursor, self.is_postgres)
                conn.commit()
            except BaseException as exc:
                dbapi = dialect.loaded_dbapi
                with suppress(Exception):  # a broken connection is discarded below
                    conn.rollback()
                if isinstance(exc, dbapi.Error):
                    if dialect.is_disconnect(exc, conn.dbapi_connection, cursor):
                        conn.invalidate(exc)
                    raise DBAPIError.instance(
                        None, None, exc, dbapi.Error, dialect=dialect
                    ) from exc
                raise
            finally:
                conn.close()  # back to the pool

    def dispose(self) -> None:
        self.engine.dispose()
        if isinstance(self._write_lock, _WriterLock):
            self._write_lock.close()
            self._write_lock = threading.Lock()
