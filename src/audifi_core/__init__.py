"""AudiFi's pure domain: models, use cases and the ports they need.

Nothing in this package performs I/O itself or imports a driver (aiohttp, asyncpg, redis,
web3, stripe, eth_account); adapters implement the ports declared here.
"""

__all__ = ["errors", "events", "ports"]
