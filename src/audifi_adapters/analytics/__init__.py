"""Analytics and notification adapters: memory, PostgreSQL (COPY ingest, partitions, aggregation)."""

from .memory import (
    InMemoryAnalyticsRepository,
    InMemoryNotificationRepository,
    register_memory_repositories,
)
from .partitions import ensure_partitions
from .postgres import (
    PostgresAnalyticsRepository,
    PostgresNotificationRepository,
    register_postgres_repositories,
)

__all__ = [
    "InMemoryAnalyticsRepository",
    "InMemoryNotificationRepository",
    "register_memory_repositories",
    "PostgresAnalyticsRepository",
    "PostgresNotificationRepository",
    "register_postgres_repositories",
    "ensure_partitions",
]
