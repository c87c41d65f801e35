"""Repositories of the payments context: in-memory (dev default) and PostgreSQL."""

from .memory import InMemoryPaymentsRepository, register_memory_payments_repository
from .postgres import PostgresPaymentsRepository, register_postgres_payments_repository

__all__ = ["InMemoryPaymentsRepository", "PostgresPaymentsRepository", "register_memory_payments_repository",
           "register_postgres_payments_repository"]
