"""PostgreSQL adapters (asyncpg): a FIFO-gated pool, migrations, unit of work, repositories."""

from .db import PostgresDatabase, PostgresUnitOfWork
from .migrate import apply_migrations

__all__ = ["PostgresDatabase", "PostgresUnitOfWork", "apply_migrations"]
