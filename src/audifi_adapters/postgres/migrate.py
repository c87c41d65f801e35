"""Plain-SQL migrations, applied in file-name order and recorded in ``schema_migrations``."""

from __future__ import annotations

from importlib import resources

import asyncpg

__all__ = ["apply_migrations", "migration_files"]

_LOCK = 0x4155_4449_4D49_47  # "AUDIMIG": serialises concurrent migrators


def migration_files() -> list[tuple[str, str]]:
    root = resources.files("audifi_adapters.postgres") / "migrations"
    files = sorted((p.name, p.read_text()) for p in root.iterdir() if p.name.endswith(".sql"))
    return files


async def apply_migrations(dsn: str) -> list[str]:
    """Apply what is not applied yet; returns the names applied now."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
                applied_now.append(name)
    finally:
        await conn.close()
    return applied_now
