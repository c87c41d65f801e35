"""Background tasks that always stop: cancelled on exit, re-cancelled if a library swallows it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

__all__ = ["start_background", "stop_task"]

log = structlog.get_logger("audifi.tasks")


async def stop_task(task: asyncio.Task[Any], grace: float = 5.0) -> None:
    """Cancel ``task`` and wait for it; cancel again while a driver swallows the cancellation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait({task}, timeout=0.2)
        if loop.time() > deadline:
            log.error("background_task_would_not_stop", task=task.get_name())
            return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


def start_background(stack: contextlib.AsyncExitStack, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Run ``coro`` until the stack unwinds; then stop it (see ``stop_task``)."""
    task = asyncio.create_task(coro, name=name)
    stack.push_async_callback(stop_task, task)
    return task
