"""Fan-out mechanics: the coalescing tally pump, the local hub, bounded queues and slow clients."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import orjson
import pytest

from audifi_adapters.studio.hub import CLOSE_REVOKED, CLOSE_TOO_SLOW, LocalHub
from audifi_adapters.studio_context import HUB
from audifi_core.studio.model import Tally
from audifi_core.studio.pump import TallyPump
from audifi_http import create_app
from audifi_http.routes.studio import StudioSocket

from ..conftest import base_config
from ..http.helpers import platform_of
from .kit import closed, connect, open_studio, recv


async def _until(check: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


def _tally(seq: int, a: int = 0, b: int = 0) -> Tally:
    return Tally(decision_id="d1", seq=seq, options=("A", "B"), counts=(a, b))


@attrs.define
class Recorder:
    reads: int = 0
    fail_next: int = 0
    published: list[Tally] = attrs.Factory(list)

    async def read(self, decision_id: str) -> Tally:
        self.reads += 1
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("database away")
        return _tally(self.reads, self.reads)

    async def publish(self, session_id: str, tally: Tally) -> None:
        self.published.append(tally)


class TestTallyPump:
    async def test_first_change_goes_out_at_once(self):
        """The first change is published without waiting for the interval."""
        rec = Recorder()
        pump = TallyPump(rec.read, rec.publish, interval=30.0)
        pump.committed("s1", "d1")
        await _until(lambda: rec.published)
        assert [t.seq for t in rec.published] == [1]
        await pump.close()

    async def test_storm_coalesces(self):
        """A burst of 500 changes: the first at once, then one more with the newest tallies."""
        rec = Recorder()
        pump = TallyPump(rec.read, rec.publish, interval=0.2)
        pump.committed("s1", "d1")
        await _until(lambda: rec.published)
        for _ in range(499):
            pump.committed("s1", "d1")
        await _until(lambda: len(rec.published) == 2)
        await asyncio.sleep(0.3)
        assert len(rec.published) == 2 and rec.reads == 2
        await pump.close()

    async def test_offered_tally_saves_a_read(self):
        """A tally read after the commit (the HTTP response's) is published as is."""
        rec = Recorder()
        pump = TallyPump(rec.read, rec.publish, interval=0.05)
        gen = pump.committed("s1", "d1")
        pump.offer("d1", _tally(42, 3, 4), gen)
        await _until(lambda: rec.published)
        assert rec.published == [_tally(42, 3, 4)] and rec.reads == 0
        await pump.close()

    async def test_failed_read_is_retried(self):
        """A read that fails is tried again the next interval; the change still goes out."""
        rec = Recorder(fail_next=2)
        pump = TallyPump(rec.read, rec.publish, interval=0.01)
        pump.committed("s1", "d1")
        await _until(lambda: rec.published)
        assert rec.reads == 3 and len(rec.published) == 1
        await pump.close()


@attrs.define(eq=False)
class FakeMember:
    conn_id: str
    session_id: str = "s1"
    auth_session_id: str | None = None
    limit: int = 1000
    got: list[dict[str, Any]] = attrs.Factory(list)
    kicked: int | None = None

    def offer(self, data: bytes) -> bool:
        if len(self.got) >= self.limit:
            return False
        self.got.append(orjson.loads(data))
        return True

    def kick(self, code: int, reason: str) -> None:
        self.kicked = code


def _update(seq: int, a: int) -> dict[str, Any]:
    return {"sessionId": "s1", "message": {"type": "vote_update", "decisionId": "d1", "results": {"A": a},
                                           "seq": seq}}


class TestLocalHub:
    async def test_vote_updates_coalesce_per_decision(self):
        """Many updates at once: the first goes out now, the newest after the interval; stale ones never."""
        hub = LocalHub(interval=0.1)
        m = FakeMember("c1")
        hub.join(m)
        for seq in range(1, 51):
            hub.on_message(_update(seq, seq))
        hub.on_message(_update(7, 7))  # stale: arrives late from another instance
        assert [x["seq"] for x in m.got] == [1]
        await _until(lambda: len(m.got) == 2)
        assert m.got[1]["seq"] == 50 and m.got[1]["results"] == {"A": 50}
        hub.close()

    async def test_other_messages_pass_and_closed_supersedes(self):
        """Non-vote messages go out at once; decision_closed drops an older pending update."""
        hub = LocalHub(interval=0.1)
        m = FakeMember("c1")
        hub.join(m)
        hub.on_message(_update(1, 1))
        hub.on_message(_update(2, 2))
        hub.on_message({"sessionId": "s1", "message": {"type": "decision_closed", "decisionId": "d1",
                                                       "winner": "A", "results": {"A": 2}, "seq": 3}})
        hub.on_message({"sessionId": "other", "message": {"type": "user_left", "userId": "u"}})
        await asyncio.sleep(0.15)
        assert [x["type"] for x in m.got] == ["vote_update", "decision_closed"]
        hub.close()

    async def test_slow_member_is_dropped_others_unaffected(self):
        """A member whose queue is full is kicked (1013); the others get every message."""
        hub = LocalHub(interval=0.0)
        slow, fast = FakeMember("slow", limit=3), FakeMember("fast")
        for m in (slow, fast):
            hub.join(m)
        for i in range(10):
            hub.on_message({"sessionId": "s1", "message": {"type": "user_left", "userId": f"u{i}"}})
        assert slow.kicked == CLOSE_TOO_SLOW and len(slow.got) == 3
        assert len(fast.got) == 10 and fast.kicked is None
        assert hub.members("s1") == [fast] and hub.dropped == 1

    async def test_revoked_sessions_are_kicked(self):
        """A revoked auth session's members are kicked, joined or not; others stay."""
        hub = LocalHub()
        a, b, c = FakeMember("a", auth_session_id="ses_1"), FakeMember("b", auth_session_id="ses_1"), \
            FakeMember("c", auth_session_id="ses_2")
        for m in (a, b, c):
            hub.attach(m)
        hub.join(a)
        hub.on_revoked({"sessionIds": ["ses_1"]})
        assert (a.kicked, b.kicked, c.kicked) == (CLOSE_REVOKED, CLOSE_REVOKED, None)


class StuckWs:
    """A WebSocketResponse whose peer stopped reading: every send blocks."""

    def __init__(self) -> None:
        self.closed_with: int | None = None
        self._never = asyncio.Event()

    async def send_frame(self, data: bytes, opcode: Any) -> None:
        await self._never.wait()

    async def close(self, *, code: int, message: bytes, drain: bool) -> bool:
        self.closed_with = code
        return True


@attrs.define
class FakeRequest:
    transport: Any = None


class TestStudioSocketQueue:
    async def test_bounded_queue_then_dropped(self):
        """The writer blocks on a stuck peer; once its queue is full the hub drops it, with 1013."""
        hub = LocalHub(interval=0.0)
        ws = StuckWs()
        sock = StudioSocket(ws, FakeRequest(), "s1", queue_limit=4)  # type: ignore[arg-type]
        hub.join(sock)
        for i in range(10):
            hub.send("s1", orjson.dumps({"type": "user_left", "userId": f"u{i}"}))
        assert sock.closing and hub.dropped == 1 and hub.members("s1") == []
        await asyncio.wait_for(sock.closer, 5)  # type: ignore[arg-type]
        assert ws.closed_with == CLOSE_TOO_SLOW


@pytest.fixture
async def mem_client(aiohttp_client, tmp_path):
    cfg = base_config(tmp_path)
    cfg = attrs.evolve(cfg, settings={**dict(cfg.settings), "STUDIO_SEND_QUEUE": "8"})
    return await aiohttp_client(create_app(cfg))


class TestSlowClientOverTcp:
    async def test_a_client_that_stops_reading_is_dropped(self, mem_client):
        """Real sockets: 16 MB for a client that never reads fills its buffers and queue, and it is
        dropped; a client that reads gets every message."""
        client = mem_client
        st = await open_studio(client)
        slow, _ = await connect(client, st.session_id, st.artist)
        fast, _ = await connect(client, st.session_id, st.artist)
        hub: LocalHub = platform_of(client).extras[HUB]
        await _until(lambda: len(hub.members(st.session_id)) == 2)
        blob = orjson.dumps({"type": "contribution_added", "contribution": {"description": "x" * 65_000}})
        got = 0

        async def read_fast() -> None:
            nonlocal got
            while got < 256:
                m = await recv(fast, "contribution_added")
                assert len(m["contribution"]["description"]) == 65_000
                got += 1

        reader = asyncio.create_task(read_fast())
        for _ in range(256):
            hub.send(st.session_id, blob)
            await asyncio.sleep(0)  # let writers run, as the event loop would between messages
        await asyncio.wait_for(reader, 30)
        assert got == 256 and hub.dropped == 1
        assert [m.conn_id for m in hub.members(st.session_id)] != [] and len(hub.members(st.session_id)) == 1
        # reading now, the slow client finds what its buffers held, then the end of the socket
        code = await closed(slow, within=30)
        assert code in (CLOSE_TOO_SLOW, 1006), code
        await fast.close()
