"""An in-memory database with real transactions: one writer at a time, undo on rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import attrs

from audifi_core.auth.model import User, Wallet
from audifi_core.errors import Conflict
from audifi_core.events import DomainEvent

__all__ = ["InMemoryDatabase", "InMemoryUnitOfWork", "InMemoryRepository", "Undo"]


@attrs.define
class OutboxRow:
    seq: int
    event: DomainEvent
    published: bool = False


class InMemoryDatabase:
    """The whole state; a unit of work holds ``write_lock`` from begin to commit."""

    def __init__(self) -> None:
        self.write_lock = asyncio.Lock()
        self.users: dict[str, User] = {}
        self.user_index = 0
        self.emails: dict[str, str] = {}
        self.wallets: dict[str, Wallet] = {}
        self.recovery: dict[str, dict[str, datetime | None]] = {}
        self.outbox: list[OutboxRow] = []
        self.outbox_seq = 0
        self.processed: set[tuple[str, str]] = set()
        self.tables: dict[str, dict[Any, Any]] = {}  # other contexts keep their rows here
        self.on_commit: list[Callable[[], None]] = []

    def table(self, name: str) -> dict[Any, Any]:
        return self.tables.setdefault(name, {})

    def uow(self, readonly: bool = False) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self, readonly=readonly)


class Undo:
    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        if key in mapping:
            old = mapping[key]
            self.steps.append(lambda: mapping.__setitem__(key, old))
        else:
            self.steps.append(lambda: mapping.pop(key, None))
        mapping[key] = value

    def delete(self, mapping: dict[Any, Any], key: Any) -> None:
        if key in mapping:
            old = mapping.pop(key)
            self.steps.append(lambda: mapping.__setitem__(key, old))

    def rollback(self) -> None:
        for step in reversed(self.steps):
            step()
        self.steps.clear()


class InMemoryRepository:
    """Base of memory repositories: the database, the unit of work's undo log, read-only guard."""

    def __init__(self, db: InMemoryDatabase, undo: Undo, readonly: bool):
        self._db = db
        self._undo = undo
        self._ro = readonly

    def _w(self) -> None:
        if self._ro:
            raise RuntimeError("read-only unit of work")


class InMemoryUserRepository(InMemoryRepository):

    async def next_index(self) -> int:
        self._w()
        self._db.user_index += 1  # like a sequence: never rolled back
        return self._db.user_index

    async def add(self, user: User) -> None:
        self._w()
        if user.email in self._db.emails:
            raise Conflict("Email already registered")
        self._undo.set(self._db.emails, user.email, user.id)
        self._undo.set(self._db.users, user.id, user)

    async def get(self, user_id: str) -> User | None:
        return self._db.users.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        uid = self._db.emails.get(email)
        return self._db.users.get(uid) if uid else None

    async def update(self, user: User) -> None:
        self._w()
        self._undo.set(self._db.users, user.id, user)

    async def wallets_of(self, user_id: str) -> list[Wallet]:
        return [w for w in self._db.wallets.values() if w.user_id == user_id]

    async def add_wallet(self, wallet: Wallet) -> None:
        self._w()
        if wallet.address.lower() in self._db.wallets:
            raise Conflict("This address is already linked", details={"address": wallet.address})
        self._undo.set(self._db.wallets, wallet.address.lower(), wallet)

    async def remove_wallet(self, user_id: str, address: str) -> bool:
        self._w()
        w = self._db.wallets.get(address.lower())
        if w is None or w.user_id != user_id:
            return False
        self._undo.delete(self._db.wallets, address.lower())
        return True

    async def wallet_owner(self, address: str) -> str | None:
        w = self._db.wallets.get(address.lower())
        return w.user_id if w else None

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        self._w()
        self._undo.set(self._db.recovery, user_id, dict.fromkeys(code_hashes))

    async def consume_recovery_code(self, user_id: str, code_hash: str, now: datetime) -> bool:
        self._w()
        codes = self._db.recovery.get(user_id, {})
        if code_hash in codes and codes[code_hash] is None:
            new = dict(codes)
            new[code_hash] = now
            self._undo.set(self._db.recovery, user_id, new)
            return True
        return False


class InMemoryProcessedEvents:
    def __init__(self, db: InMemoryDatabase, undo: Undo):
        self._db = db
        self._undo = undo

    async def mark(self, consumer: str, event_id: str) -> bool:
        key = (consumer, event_id)
        if key in self._db.processed:
            return False
        self._db.processed.add(key)
        self._undo.steps.append(lambda: self._db.processed.discard(key))
        return True


class InMemoryUnitOfWork:
    """Holds the database's write lock from enter to commit; every write logs its undo step.

    Other contexts add repositories with ``InMemoryUnitOfWork.register("jobs", factory)``; the
    factory gets ``(db, undo, readonly)`` and becomes ``uow.<name>``. They keep rows in
    ``db.table("...")`` and write through ``undo.set`` / ``undo.delete`` so rollback restores them.
    """

    repositories: dict[str, Callable[[InMemoryDatabase, Undo, bool], Any]] = {}

    @classmethod
    def register(cls, name: str, factory: Callable[[InMemoryDatabase, Undo, bool], Any]) -> None:
        cls.repositories[name] = factory

    def __init__(self, db: InMemoryDatabase, readonly: bool = False):
        self.db = db
        self.readonly = readonly
        self.undo = Undo()
        self._events: list[DomainEvent] = []
        self.users = InMemoryUserRepository(db, self.undo, readonly)
        self.processed = InMemoryProcessedEvents(db, self.undo)
        for name, factory in self.repositories.items():
            setattr(self, name, factory(db, self.undo, readonly))

    def emit(self, event: DomainEvent) -> None:
        if self.readonly:
            raise RuntimeError("read-only unit of work")
        self._events.append(event)

    async def __aenter__(self) -> Self:
        if not self.readonly:
            await self.db.write_lock.acquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.readonly:
            return
        try:
            if exc_type is not None:
                self.undo.rollback()
                return
            for event in self._events:
                self.db.outbox_seq += 1
                self.db.outbox.append(OutboxRow(self.db.outbox_seq, event))
        finally:
            self.db.write_lock.release()
        if self._events:
            for cb in list(self.db.on_commit):
                cb()
