"""``audifi serve | migrate | admin grant EMAIL``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from audifi_adapters.config import Config, ConfigError

__all__ = ["main"]


def _serve(cfg: Config, host: str | None, port: int | None) -> int:
    import attrs
    from aiohttp import web

    from .app import create_app
    from .logs import AccessLogger, configure_logging

    if host or port:
        import os

        cfg = attrs.evolve(cfg, host=host or cfg.host, port=port or cfg.port)
        if "PUBLIC_URL" not in os.environ:
            shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
            cfg = attrs.evolve(cfg, public_url=f"http://{shown}:{cfg.port}")
        cfg.validate()
    configure_logging(cfg.log_format, cfg.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - optional speed-up
        pass
    web.run_app(create_app(cfg), host=cfg.host, port=cfg.port, access_log_class=AccessLogger,
                shutdown_timeout=15, print=lambda *_: None)
    return 0


async def _migrate(cfg: Config) -> int:
    from audifi_adapters.postgres import apply_migrations

    if not cfg.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    done = await apply_migrations(cfg.database_url)
    print("applied: " + (", ".join(done) if done else "nothing (up to date)"))
    return 0


async def _grant(cfg: Config, email: str) -> int:
    from audifi_adapters.platform import open_platform

    async with open_platform(cfg, run_background=False) as p:
        user = await p.auth.grant_admin(email)
    print(f"{user.email} ({user.id}) is an admin")
    if not cfg.database_url:
        print("note: no DATABASE_URL, so this grant lives only in this process's memory", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audifi")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    sub.add_parser("migrate", help="apply database migrations")
    a = sub.add_parser("admin", help="administration")
    asub = a.add_subparsers(dest="admin_cmd", required=True)
    g = asub.add_parser("grant", help="make a user an admin")
    g.add_argument("email")
    args = parser.parse_args(argv)
    try:
        cfg = Config.from_environ()
        if args.cmd == "serve":
            return _serve(cfg, args.host, args.port)
        if args.cmd == "migrate":
            return asyncio.run(_migrate(cfg))
        return asyncio.run(_grant(cfg, args.email))
    except ConfigError as e:
        print(f"audifi: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
