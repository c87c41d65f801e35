"""The bounded contexts the composition root opens, in dependency order.

Each context lives in its own module ``audifi_adapters.<name>_context`` exposing
``async def open_context(platform, stack, *, run_background: bool) -> None``: it builds its
adapters and services from ``platform.config``, attaches them to the platform (``platform.masters
= …``), registers ``platform.checks`` and ``platform.adapters`` entries, and pushes every pool,
client and background task onto ``stack`` so they close in reverse order. A context whose module
is not present yet is skipped, so contexts can be developed independently.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .platform import Platform

__all__ = ["CONTEXTS", "open_contexts"]

CONTEXTS = ("chain", "masters", "studio", "coins", "payments", "analytics")


async def open_contexts(platform: Platform, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    for name in CONTEXTS:
        module_name = f"audifi_adapters.{name}_context"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        await module.open_context(platform, stack, run_background=run_background)
