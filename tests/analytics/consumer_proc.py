"""A stand-alone analytics consumer process for the crash test.

``python -m tests.analytics.consumer_proc DSN REDIS_URL PREFIX NAME`` (from the repository root):
consumes the analytics group slowly, so the test can SIGKILL it mid-batch; prints ``ready``.
"""

from __future__ import annotations

import asyncio
import sys

from audifi_adapters.bus import ConsumerSettings

from .rig import Rig


async def main(dsn: str, redis_url: str, prefix: str, name: str) -> None:
    settings = ConsumerSettings(batch=40, block_ms=100, min_idle_ms=300, max_deliveries=5, claim_every=0.2)
    rig = await Rig.open(dsn, redis_url, prefix, settings=settings, consumer_name=name, delay=0.01)
    rig.bus.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
