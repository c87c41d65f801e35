"""Configuration: one attrs class, built from an environment mapping at the entry points only."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import attrs

__all__ = ["Config", "ConfigError"]


class ConfigError(Exception):
    """The process must not start with this configuration; the message names what is wrong."""


def _secret() -> str:
    return attrs.field(default=None, repr=lambda v: "***" if v else "None")


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Config:
    env: str = "dev"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    cors_origins: tuple[str, ...] = ()
    artist_signup: str = "open"
    data_dir: Path = Path(".audifi")
    log_format: str = "console"
    log_level: str = "info"
    database_url: str | None = _secret()
    db_pool_size: int = 10
    redis_url: str | None = _secret()
    redis_prefix: str = "audifi:"
    rpc_url: str | None = None
    chain_id: int = 131277322940537  # eth-tester's default chain id; a node's own id otherwise
    smtp_url: str | None = _secret()
    mail_from: str = "AudiFi <no-reply@audifi.local>"
    ipfs_api_url: str | None = None
    pinata_api_key: str | None = _secret()
    pinata_secret_key: str | None = _secret()
    private_key: str | None = _secret()
    stripe_secret_key: str | None = _secret()
    stripe_webhook_secret: str | None = _secret()
    jwt_secret: str | None = _secret()
    magic_link_secret: str | None = _secret()
    encryption_key: str | None = _secret()
    custody_mnemonic: str | None = _secret()
    password_hash_memory_kib: int = 65536
    upload_limit_bytes: int = 200 * 1024 * 1024
    confirmations: int | None = None
    signer_balance_floor_wei: int = 0
    chain_poll_interval: float = 0.5
    gas_bump_after: float = 60.0
    master_factory_address: str | None = None
    coin_factory_address: str | None = None
    # The raw environment, for settings a bounded context reads itself (``config.setting(...)``).
    settings: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    def setting(self, name: str, default: str | None = None) -> str | None:
        """A context-specific setting from the environment (e.g. ``MASTER_DAILY_QUOTA``)."""
        v = self.settings.get(name, "").strip()
        return v or default

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Config:
        e = dict(os.environ if env is None else env)
        mode = e.get("AUDIFI_ENV", "dev").strip().lower()
        if mode not in ("dev", "production"):
            raise ConfigError(f"AUDIFI_ENV must be dev or production, not {mode!r}")

        def opt(name: str) -> str | None:
            v = e.get(name, "").strip()
            return v or None

        port = int(e.get("PORT", "8080"))
        host = e.get("HOST", "127.0.0.1")
        cfg = cls(
            env=mode,
            host=host,
            port=port,
            public_url=(opt("PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
            cors_origins=tuple(o.strip() for o in e.get("CORS_ORIGINS", "").split(",") if o.strip()),
            artist_signup=(opt("ARTIST_SIGNUP") or ("approval" if mode == "production" else "open")).lower(),
            data_dir=Path(e.get("AUDIFI_DATA_DIR", ".audifi")),
            log_format=(opt("LOG_FORMAT") or ("json" if mode == "production" else "console")),
            log_level=(opt("LOG_LEVEL") or "info").lower(),
            database_url=opt("DATABASE_URL"),
            db_pool_size=int(e.get("DB_POOL_SIZE", "10")),
            redis_url=opt("REDIS_URL"),
            redis_prefix=e.get("REDIS_PREFIX", "audifi:"),
            rpc_url=opt("RPC_URL"),
            chain_id=int(e.get("CHAIN_ID", "131277322940537")),
            smtp_url=opt("SMTP_URL"),
            mail_from=e.get("MAIL_FROM", "AudiFi <no-reply@audifi.local>"),
            ipfs_api_url=opt("IPFS_API_URL"),
            pinata_api_key=opt("PINATA_API_KEY"),
            pinata_secret_key=opt("PINATA_SECRET_KEY"),
            private_key=opt("PRIVATE_KEY"),
            stripe_secret_key=opt("STRIPE_SECRET_KEY"),
            stripe_webhook_secret=opt("STRIPE_WEBHOOK_SECRET"),
            jwt_secret=opt("JWT_SECRET"),
            magic_link_secret=opt("MAGIC_LINK_SECRET"),
            encryption_key=opt("ENCRYPTION_KEY"),
            custody_mnemonic=opt("CUSTODY_MNEMONIC"),
            password_hash_memory_kib=int(e.get("PASSWORD_HASH_MEMORY_KIB", "65536")),
            upload_limit_bytes=int(e.get("UPLOAD_LIMIT_BYTES", str(200 * 1024 * 1024))),
            confirmations=int(e["CONFIRMATIONS"]) if opt("CONFIRMATIONS") else None,
            signer_balance_floor_wei=int(e.get("SIGNER_BALANCE_FLOOR_WEI", "0") or 0),
            chain_poll_interval=float(e.get("CHAIN_POLL_INTERVAL", "0.5") or 0.5),
            gas_bump_after=float(e.get("GAS_BUMP_AFTER", "60") or 60),
            master_factory_address=opt("MASTER_FACTORY_ADDRESS"),
            coin_factory_address=opt("COIN_FACTORY_ADDRESS"),
            settings=e,
        )
        cfg.validate()
        return cfg

    @classmethod
    def dev(cls, **overrides: object) -> Config:
        """Dev mode with every adapter in-process unless overridden (tests, library use)."""
        cfg = attrs.evolve(cls(), **overrides)  # type: ignore[arg-type]
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.artist_signup not in ("open", "approval"):
            raise ConfigError("ARTIST_SIGNUP must be open or approval")
        if self.production:
            missing = [name for name, value in [
                ("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url),
                ("RPC_URL", self.rpc_url), ("PRIVATE_KEY", self.private_key),
                ("STRIPE_SECRET_KEY", self.stripe_secret_key),
                ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret), ("SMTP_URL", self.smtp_url),
                ("PINATA_API_KEY or IPFS_API_URL", self.pinata_api_key or self.ipfs_api_url),
                ("JWT_SECRET", self.jwt_secret), ("MAGIC_LINK_SECRET", self.magic_link_secret),
                ("ENCRYPTION_KEY", self.encryption_key), ("CUSTODY_MNEMONIC", self.custody_mnemonic),
                ("MASTER_FACTORY_ADDRESS", self.master_factory_address),
                ("COIN_FACTORY_ADDRESS", self.coin_factory_address),
            ] if not value]
            if self.pinata_api_key and not self.pinata_secret_key:
                missing.append("PINATA_SECRET_KEY")
            if missing:
                raise ConfigError("production mode needs: " + ", ".join(missing))
            for name, value in (("JWT_SECRET", self.jwt_secret), ("MAGIC_LINK_SECRET", self.magic_link_secret),
                                ("ENCRYPTION_KEY", self.encryption_key)):
                if value is not None and len(value) < 32:
                    raise ConfigError(f"{name} must be at least 32 characters")
        else:
            set_prod = [n for n, v in (("STRIPE_SECRET_KEY", self.stripe_secret_key),
                                       ("PRIVATE_KEY", self.private_key)) if v]
            if set_prod:
                raise ConfigError(f"dev mode refuses production secrets: {', '.join(set_prod)} "
                                  "(set AUDIFI_ENV=production)")
            if not _is_loopback_host(self.host):
                raise ConfigError(f"dev mode binds only to loopback, not {self.host!r}")
            pu = urlsplit(self.public_url).hostname or ""
            if not _is_loopback_host(pu):
                raise ConfigError(f"dev mode needs a loopback PUBLIC_URL, not {self.public_url!r}")

    def with_dev_secrets(self) -> Config:
        """Fill unset secrets in dev from ``data_dir/dev-secrets.json`` (created once, kept)."""
        if self.production:
            return self
        path = self.data_dir / "dev-secrets.json"
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text())
        changed = False
        for name in ("jwt_secret", "magic_link_secret", "encryption_key"):
            if name not in stored:
                stored[name] = secrets.token_urlsafe(32)
                changed = True
        if "custody_mnemonic" not in stored:
            from .chain.custody import HdCustody

            stored["custody_mnemonic"] = HdCustody.generate().mnemonic
            changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, indent=1))
            tmp.chmod(0o600)
            tmp.replace(path)
        return attrs.evolve(self, **{k: getattr(self, k) or stored[k] for k in
                                     ("jwt_secret", "magic_link_secret", "encryption_key", "custody_mnemonic")})
