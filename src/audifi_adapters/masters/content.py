"""Which ContentStore a config gets: Pinata, a Kubo node, or a local directory (dev)."""

from __future__ import annotations

import contextlib
from typing import Any

from audifi_core.content import ContentStore

from ..ipfs import KuboContentStore, LocalContentStore, PinataContentStore

__all__ = ["open_content_store"]


async def open_content_store(config: Any, stack: contextlib.AsyncExitStack) -> tuple[ContentStore, str]:
    """``(store, adapter name)``: Pinata when ``PINATA_API_KEY``/``PINATA_SECRET_KEY`` are set, else Kubo
    when ``IPFS_API_URL`` is, else a local directory under ``data_dir/ipfs`` (dev). HTTP clients close
    with ``stack``."""
    if config.pinata_api_key and config.pinata_secret_key:
        env = dict(getattr(config, "settings", {}) or {})
        env.update(PINATA_API_KEY=config.pinata_api_key, PINATA_SECRET_KEY=config.pinata_secret_key)
        opts: dict[str, Any] = {}
        api = config.setting("PINATA_API_URL") if hasattr(config, "setting") else None
        if api:
            opts["api_url"] = api
        pinata = PinataContentStore.from_env(env, **opts)
        await pinata.start()
        stack.push_async_callback(pinata.close)
        return pinata, "pinata"
    if config.ipfs_api_url:
        kubo = KuboContentStore(config.ipfs_api_url)
        await kubo.start()
        stack.push_async_callback(kubo.close)
        return kubo, "kubo"
    return LocalContentStore(config.data_dir / "ipfs"), "local"
