"""Adapters of the masters context: memory and PostgreSQL repositories, content-store selection."""

from .content import open_content_store
from .memory import (
    InMemoryMasterReads,
    InMemoryMasterRepository,
    register_memory_master_repositories,
)
from .postgres import (
    PostgresMasterReads,
    PostgresMasterRepository,
    register_postgres_master_repositories,
)

__all__ = [
    "InMemoryMasterReads",
    "InMemoryMasterRepository",
    "PostgresMasterReads",
    "PostgresMasterRepository",
    "open_content_store",
    "register_memory_master_repositories",
    "register_postgres_master_repositories",
]
