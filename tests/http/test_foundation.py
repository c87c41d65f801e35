"""The foundation over HTTP: health, readiness, envelope, request ids, CORS, OpenAPI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from audifi_adapters.config import Config
from audifi_http import create_app

from .helpers import error_of

API_MD = Path(__file__).resolve().parents[3] / "shared" / "design" / "API.md"


@pytest.fixture
async def client(aiohttp_client, backend: Config):
    return await aiohttp_client(create_app(backend))


class TestOps:
    async def test_health(self, client):
        """/health answers ok."""
        r = await client.get("/health")
        assert r.status == 200 and await r.json() == {"status": "ok"}

    async def test_ready_lists_live_adapters(self, client, backend):
        """/ready runs each live adapter's check and names the adapters."""
        r = await client.get("/ready")
        body = await r.json()
        assert r.status == 200, body
        assert body["status"] == "ok"
        if backend.database_url:
            assert {"database": "ok", "redis": "ok"}.items() <= body["checks"].items()
            assert set(body["checks"].values()) == {"ok"}
            assert body["adapters"]["database"] == "postgres"
        else:
            assert body["adapters"]["database"] == "memory"

    async def test_openapi_is_valid_31(self, client):
        """/openapi.json is a valid OpenAPI 3.1 document listing the auth routes."""
        doc = await (await client.get("/openapi.json")).json()
        validate(doc)
        assert doc["openapi"] == "3.1.0"
        assert "post" in doc["paths"]["/auth/login"]
        body = doc["paths"]["/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/LoginBody"}
        assert doc["components"]["schemas"]["LoginBody"]["required"] == ["email", "password"]


class TestEnvelope:
    async def test_unknown_route_404(self, client):
        """An unknown path answers the envelope with NOT_FOUND."""
        e = await error_of(await client.get("/no/such/thing"), 404)
        assert e["code"] == "NOT_FOUND"

    async def test_wrong_method_405(self, client):
        """A known path with the wrong method answers the envelope with 405."""
        e = await error_of(await client.put("/health"), 405)
        assert e["code"] == "METHOD_NOT_ALLOWED"

    async def test_malformed_json(self, client):
        """Malformed JSON is a VALIDATION_ERROR naming the body."""
        e = await error_of(await client.post("/auth/login", data=b"{nope"), 400)
        assert e["code"] == "VALIDATION_ERROR" and "body" in e["details"]["fields"]

    async def test_fields_listed(self, client):
        """Each bad field is listed with why."""
        e = await error_of(await client.post("/auth/login", json={"email": 5}), 400)
        assert e["details"]["fields"] == {"email": "invalid value for type, expected str",
                                          "password": "required"}

    async def test_non_object_body(self, client):
        """A JSON array where an object is expected is a VALIDATION_ERROR."""
        e = await error_of(await client.post("/auth/login", json=[1, 2]), 400)
        assert e["details"]["fields"] == {"body": "expected an object"}

    async def test_large_json_body_read_whole(self, client):
        """A JSON body spanning many network chunks is read whole (a 300 KB login → 401, not malformed)."""
        e = await error_of(await client.post("/auth/login", json={"email": "big@example.com",
                                                                  "password": "x" * 300_000}), 401)
        assert e["code"] == "UNAUTHORIZED"

    async def test_body_over_limit_413(self, client):
        """A JSON body over 1 MB is PAYLOAD_TOO_LARGE."""
        e = await error_of(await client.post("/auth/login", data=io.BytesIO(b"[" + b"1," * 600_000 + b"1]"),
                                             headers={"Content-Type": "application/json"}), 413)
        assert e["code"] == "PAYLOAD_TOO_LARGE"

    async def test_request_id_echoed(self, client):
        """A client's X-Request-Id comes back, on errors too."""
        r = await client.get("/nope", headers={"X-Request-Id": "abc-123"})
        assert r.headers["X-Request-Id"] == "abc-123"
        assert (await r.json())["requestId"] == "abc-123"

    async def test_request_id_generated(self, client):
        """Without one, every response gets a fresh request id."""
        a = (await client.get("/health")).headers["X-Request-Id"]
        b = (await client.get("/health")).headers["X-Request-Id"]
        assert a.startswith("req_") and a != b


class TestCors:
    async def test_allowed_origin(self, aiohttp_client, tmp_path):
        """A configured origin gets CORS headers and a preflight answer."""
        from tests.conftest import base_config

        app = create_app(base_config(tmp_path, cors_origins=("http://localhost:5173",)))
        c = await aiohttp_client(app)
        r = await c.options("/auth/login", headers={"Origin": "http://localhost:5173",
                                                    "Access-Control-Request-Method": "POST"})
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
        r = await c.get("/health", headers={"Origin": "http://localhost:5173"})
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
        r = await c.get("/health", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in r.headers
        await error_of(await c.options("/auth/login", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}), 403)


class TestModes:
    def test_dev_refuses_non_loopback_bind(self):
        """Dev mode refuses a non-loopback bind address."""
        from audifi_adapters.config import ConfigError

        with pytest.raises(ConfigError, match="loopback"):
            Config.from_environ({"HOST": "0.0.0.0"})

    def test_dev_refuses_public_url(self):
        """Dev mode refuses a non-loopback PUBLIC_URL."""
        from audifi_adapters.config import ConfigError

        with pytest.raises(ConfigError, match="PUBLIC_URL"):
            Config.from_environ({"PUBLIC_URL": "https://audifi.example"})

    def test_dev_refuses_production_secrets(self):
        """Dev mode refuses STRIPE_SECRET_KEY / PRIVATE_KEY."""
        from audifi_adapters.config import ConfigError

        with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
            Config.from_environ({"STRIPE_SECRET_KEY": "sk_live_x"})

    def test_production_names_what_is_missing(self):
        """Production mode refuses to start and names every missing setting."""
        from audifi_adapters.config import ConfigError

        with pytest.raises(ConfigError) as e:
            Config.from_environ({"AUDIFI_ENV": "production", "DATABASE_URL": "postgresql://x/y"})
        for name in ("REDIS_URL", "RPC_URL", "PRIVATE_KEY", "STRIPE_SECRET_KEY", "SMTP_URL", "JWT_SECRET"):
            assert name in str(e.value)
        assert "DATABASE_URL" not in str(e.value)

    def test_production_defaults(self):
        """Production defaults ARTIST_SIGNUP to approval and logs JSON; secrets are hidden from repr."""
        env = {"AUDIFI_ENV": "production", "DATABASE_URL": "postgresql://u:pw@db/x", "REDIS_URL": "redis://r",
               "RPC_URL": "http://node", "PRIVATE_KEY": "0x" + "11" * 32, "STRIPE_SECRET_KEY": "sk_test_x",
               "STRIPE_WEBHOOK_SECRET": "whsec_x", "SMTP_URL": "smtp://mail", "PINATA_API_KEY": "k",
               "PINATA_SECRET_KEY": "s", "JWT_SECRET": "j" * 32, "MAGIC_LINK_SECRET": "m" * 32,
               "ENCRYPTION_KEY": "e" * 32, "CUSTODY_MNEMONIC": "test " * 11 + "junk",
               "MASTER_FACTORY_ADDRESS": "0x" + "22" * 20, "COIN_FACTORY_ADDRESS": "0x" + "33" * 20,
               "PUBLIC_URL": "https://audifi.example", "HOST": "0.0.0.0"}
        cfg = Config.from_environ(env)
        assert cfg.artist_signup == "approval" and cfg.log_format == "json"
        assert "pw" not in repr(cfg) and "sk_test_x" not in repr(cfg)

    def test_production_has_no_dev_routes(self):
        """No /dev/* route is mounted in production."""
        from audifi_http.app import build_routes

        env = {"AUDIFI_ENV": "production", "DATABASE_URL": "postgresql://u:pw@db/x", "REDIS_URL": "redis://r",
               "RPC_URL": "http://node", "PRIVATE_KEY": "0x" + "11" * 32, "STRIPE_SECRET_KEY": "sk_test_x",
               "STRIPE_WEBHOOK_SECRET": "whsec_x", "SMTP_URL": "smtp://mail", "IPFS_API_URL": "http://kubo:5001",
               "JWT_SECRET": "j" * 32, "MAGIC_LINK_SECRET": "m" * 32, "ENCRYPTION_KEY": "e" * 32,
               "CUSTODY_MNEMONIC": "test " * 11 + "junk", "MASTER_FACTORY_ADDRESS": "0x" + "22" * 20,
               "COIN_FACTORY_ADDRESS": "0x" + "33" * 20}
        paths = [r.path for r in build_routes(Config.from_environ(env)).routes]
        assert not [p for p in paths if p.startswith("/dev/")]
        assert "/dev/mailbox" in [r.path for r in build_routes(Config.dev()).routes]

    def test_cli_refuses_bad_config(self):
        """`audifi serve` with a bad configuration exits 2 naming the problem."""
        r = subprocess.run([sys.executable, "-m", "audifi_http.cli", "serve"], capture_output=True, text=True,
                           env={"AUDIFI_ENV": "production", "PATH": "/usr/bin:/bin"}, timeout=60)
        assert r.returncode == 2 and "production mode needs" in r.stderr


class TestLayering:
    def test_core_imports_no_driver(self):
        """audifi_core imports none of aiohttp, asyncpg, redis, web3, stripe, eth_account."""
        root = Path(__file__).resolve().parents[2] / "src"
        code = ("import sys, pkgutil, importlib, audifi_core\n"
                "for m in pkgutil.walk_packages(audifi_core.__path__, 'audifi_core.'):\n"
                "    importlib.import_module(m.name)\n"
                "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
                "{'aiohttp','asyncpg','redis','web3','stripe','eth_account'})\n"
                "print(json.dumps(bad))\n")
        r = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                           cwd=root, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == []

    def test_adapters_do_not_import_http(self):
        """audifi_adapters never imports audifi_http."""
        root = Path(__file__).resolve().parents[2] / "src" / "audifi_adapters"
        offenders = [str(p) for p in root.rglob("*.py")
                     if "audifi_http" in p.read_text() and "import" in p.read_text()]
        assert offenders == []
