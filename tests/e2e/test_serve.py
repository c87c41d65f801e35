"""The README's serve command as a real process: answers /health, redacts tokens, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "AUDIFI_"))}
    env.update({"AUDIFI_DATA_DIR": str(tmp_path / "data"), "PASSWORD_HASH_MEMORY_KIB": "1024"})
    audifi = Path(sys.executable).with_name("audifi")
    proc = subprocess.Popen([str(audifi), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read()) from None
            time.sleep(0.2)
    yield proc, base
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


class TestServe:
    def test_health_mailbox_and_redaction(self, server):
        """Dev server answers /health; the mailed token appears in no log line; SIGTERM stops it cleanly."""
        proc, base = server
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert r.read() == b'{"status":"ok"}'
        assert _post(base + "/auth/magic-link", b'{"email":"e2e@example.com"}') == 202
        with urllib.request.urlopen(base + "/dev/mailbox?to=e2e@example.com", timeout=5) as r:
            text = r.read().decode()
        token = text.split("?token=")[1].split("\\n")[0]
        assert len(token) >= 40
        with urllib.request.urlopen(f"{base}/auth/magic?token={token}", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "adapters=" in out and "database=memory" in out
        assert "path=/auth/magic" in out
        assert token not in out
