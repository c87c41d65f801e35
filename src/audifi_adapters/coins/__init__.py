"""Adapters of the coin context: repositories (memory, PostgreSQL) and the ERC-20 reads on web3."""

from .reads import Web3CoinReads
from .store_memory import InMemoryCoinRepository, register_memory_coin_repository
from .store_postgres import PostgresCoinRepository, register_postgres_coin_repository

__all__ = ["InMemoryCoinRepository", "PostgresCoinRepository", "Web3CoinReads", "register_memory_coin_repository",
           "register_postgres_coin_repository"]
