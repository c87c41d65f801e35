"""The write path: a unit of work whose state changes and domain events commit together."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from .events import DomainEvent

if TYPE_CHECKING:
    from .auth.ports import UserRepository

__all__ = ["UnitOfWork", "UnitOfWorkFactory", "ProcessedEvents"]


class ProcessedEvents(Protocol):
    async def mark(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handled ``event_id``; ``False`` if it already had."""
        ...


class UnitOfWork(Protocol):
    """One transaction: repositories bound to it, events stored with it (transactional outbox).

    ``async with uow_factory() as uow`` commits on a clean exit and rolls back on an exception.
    ``uow_factory(readonly=True)`` gives a view that may not write.
    """

    users: UserRepository
    processed: ProcessedEvents

    def emit(self, event: DomainEvent) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


UnitOfWorkFactory = Callable[..., UnitOfWork]
