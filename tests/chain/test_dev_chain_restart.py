"""Server mode restarts: a new in-process dev chain on the same PostgreSQL database keeps working."""

from __future__ import annotations

from audifi_http import create_app

from ..conftest import REDIS_URL, base_config
from ..masters.kit import artist, fast, registered


class TestDevChainRestart:
    async def test_register_after_restart(self, aiohttp_client, tmp_path, pg_clean, redis_prefix):
        """After a restart on the same database (a new dev chain, old chain state discarded), masters
        still register: the signer's nonces and stored transactions start over with the new chain."""
        cfg = fast(base_config(tmp_path, database_url=pg_clean, redis_url=REDIS_URL, redis_prefix=redis_prefix))
        first = await aiohttp_client(create_app(cfg))
        a = await artist(first, "restart-artist@example.com")
        m1 = await registered(first, a)
        await first.close()
        second = await aiohttp_client(create_app(cfg))
        a2 = await artist(second, "restart-artist2@example.com")
        m2 = await registered(second, a2)
        assert m1["status"] == m2["status"] == "registered"
        assert m2["contractAddress"] and m2["id"] != m1["id"]
