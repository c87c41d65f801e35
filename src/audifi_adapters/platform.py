"""The composition root: a Config in, live adapters and built services out.

``async with open_platform(Config.dev()) as p: await p.auth.request_magic_link(...)`` — the
HTTP app uses exactly this, so HTTP adds no logic of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import structlog
from redis.asyncio import Redis

from audifi_core.auth.service import AuthService, AuthSettings
from audifi_core.ports import (
    Clock,
    IdempotencyStore,
    IdGenerator,
    Mailer,
    RateLimiter,
    SingleUseStore,
)
from audifi_core.system import RandomIds, SystemClock
from audifi_core.uow import UnitOfWorkFactory

from .chain.custody import HdCustody
from .chain.signatures import EthAccountSignatureVerifier
from .config import Config, ConfigError
from .contexts import open_contexts
from .crypto import Argon2PasswordHasher, FernetSecretBox, JwtAccessTokens
from .events import InProcessEventBus, MemoryOutbox, OutboxRelay, PostgresOutbox
from .mail import SmtpMailer
from .memory import (
    InMemoryDatabase,
    InMemoryIdempotencyStore,
    InMemoryRateLimiter,
    InMemorySessionStore,
    InMemorySingleUseStore,
    OutboxMailer,
)
from .postgres import PostgresDatabase, apply_migrations
from .postgres.migrate import migration_files
from .redis import RedisIdempotencyStore, RedisRateLimiter, RedisSessionStore, RedisSingleUseStore
from .tasks import start_background

__all__ = ["Platform", "open_platform"]

log = structlog.get_logger("audifi.platform")

Check = Callable[[], Awaitable[None]]


@attrs.define
class Platform:
    config: Config
    clock: Clock
    ids: IdGenerator
    uow: UnitOfWorkFactory
    auth: AuthService
    limiter: RateLimiter
    idempotency: IdempotencyStore
    single_use: SingleUseStore
    mailer: Mailer
    bus: InProcessEventBus
    relay: OutboxRelay
    adapters: dict[str, str]
    checks: dict[str, Check]
    dev_mailbox: OutboxMailer | None = None
    database: PostgresDatabase | InMemoryDatabase | None = None
    redis: Redis | None = None
    stack: contextlib.AsyncExitStack | None = None
    # Bounded contexts attach their services here (see contexts.py), in dependency order.
    chain: Any = None
    jobs: Any = None
    content: Any = None
    masters: Any = None
    studio: Any = None
    coins: Any = None
    payments: Any = None
    analytics: Any = None
    notifications: Any = None
    extras: dict[str, Any] = attrs.Factory(dict)


async def _pending_migrations(db: PostgresDatabase) -> list[str]:
    async with db.connection() as c:
        exists = await c.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done = {r["version"] for r in await c.fetch("SELECT version FROM schema_migrations")} if exists else set()
    return [name for name, _ in migration_files() if name not in done]


@contextlib.asynccontextmanager
async def open_platform(config: Config, *, clock: Clock | None = None, ids: IdGenerator | None = None,
                        run_background: bool = True) -> AsyncIterator[Platform]:
    """Build every adapter and service for ``config``; close them all on exit."""
    config.validate()
    config = config.with_dev_secrets()
    clock = clock or SystemClock()
    ids = ids or RandomIds()
    adapters: dict[str, str] = {}
    checks: dict[str, Check] = {}
    async with contextlib.AsyncExitStack() as stack:
        # -- database and outbox
        pg: PostgresDatabase | None = None
        mem: InMemoryDatabase | None = None
        if config.database_url:
            pg = await PostgresDatabase.connect(config.database_url, config.db_pool_size)
            stack.push_async_callback(pg.close)
            if config.production:
                pending = await _pending_migrations(pg)
                if pending:
                    raise ConfigError(f"database schema is behind: run `audifi migrate` ({', '.join(pending)})")
            else:
                await apply_migrations(config.database_url)
            uow: UnitOfWorkFactory = pg.uow
            outbox: MemoryOutbox | PostgresOutbox = PostgresOutbox(pg)
            adapters["database"] = "postgres"
            checks["database"] = pg.check
        else:
            mem = InMemoryDatabase()
            uow = mem.uow
            outbox = MemoryOutbox(mem)
            adapters["database"] = "memory"

        # -- redis-backed state
        redis: Redis | None = None
        if config.redis_url:
            redis = Redis.from_url(config.redis_url)
            stack.push_async_callback(redis.aclose)
            p = config.redis_prefix
            sessions: Any = RedisSessionStore(redis, p)
            single_use: SingleUseStore = RedisSingleUseStore(redis, p)
            limiter: RateLimiter = RedisRateLimiter(redis, p)
            idempotency: IdempotencyStore = RedisIdempotencyStore(redis, p)
            adapters["sessions"] = "redis"

            async def redis_check() -> None:
                await redis.ping()

            checks["redis"] = redis_check
        else:
            sessions = InMemorySessionStore(clock)
            single_use = InMemorySingleUseStore(clock)
            limiter = InMemoryRateLimiter(clock)
            idempotency = InMemoryIdempotencyStore(clock)
            adapters["sessions"] = "memory"

        # -- mail
        dev_mailbox: OutboxMailer | None = None
        if config.smtp_url:
            smtp = SmtpMailer(config.smtp_url, config.mail_from)
            mailer: Mailer = smtp
            adapters["mail"] = "smtp"
            checks["mail"] = smtp.check
        else:
            dev_mailbox = OutboxMailer(clock)
            mailer = dev_mailbox
            adapters["mail"] = "outbox"

        # -- events
        bus = InProcessEventBus()
        relay = OutboxRelay(outbox, bus)
        (pg or mem).on_commit.append(relay.wake)  # type: ignore[union-attr]
        adapters["bus"] = "in-process"

        assert config.jwt_secret and config.magic_link_secret and config.encryption_key
        assert config.custody_mnemonic
        auth = AuthService(
            settings=AuthSettings(public_url=config.public_url, chain_id=config.chain_id,
                                  artist_signup=config.artist_signup),
            uow=uow,
            sessions=sessions,
            single_use=single_use,
            limiter=limiter,
            hasher=Argon2PasswordHasher(memory_cost_kib=config.password_hash_memory_kib),
            tokens=JwtAccessTokens(config.jwt_secret),
            box=FernetSecretBox(config.encryption_key),
            signatures=EthAccountSignatureVerifier(),
            custody=HdCustody(config.custody_mnemonic),
            mailer=mailer,
            clock=clock,
            ids=ids,
            secret_key=config.magic_link_secret.encode(),
        )

        platform = Platform(
            config=config, clock=clock, ids=ids, uow=uow, auth=auth, limiter=limiter,
            idempotency=idempotency, single_use=single_use, mailer=mailer, bus=bus, relay=relay,
            adapters=adapters, checks=checks, dev_mailbox=dev_mailbox, database=pg or mem, redis=redis,
            stack=stack,
        )
        await open_contexts(platform, stack, run_background=run_background)
        if run_background and platform.relay is relay:  # a context may have replaced the relay
            start_background(stack, relay.run(), "audifi-outbox-relay")
        log.info("platform_open", mode=config.env, **adapters)
        yield platform
