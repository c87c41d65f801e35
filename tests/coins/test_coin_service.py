"""CoinService without HTTP: deploy hooks, redeploy after a failure, reads cached per block, chain errors,
and the staking-events relay (memory database, a recording stub chain)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from audifi_adapters.chain.store_memory import register_memory_chain_repositories
from audifi_adapters.coins import register_memory_coin_repository
from audifi_adapters.memory import InMemoryDatabase
from audifi_core.auth.model import Role, User, Wallet
from audifi_core.chain.jobs import ChainJobs
from audifi_core.chain.model import BlockRef, ChainLog, DeployCoin, JobStatus, UnsignedTx
from audifi_core.chain.ports import ChainIdentity
from audifi_core.coins import BlockCache, CoinService, DeployCoinRequest, SwapRequest, TokenInfo
from audifi_core.coins.model import CoinAmountRequest, CoinStatus
from audifi_core.errors import ChainError, Conflict, Forbidden, NotFound
from audifi_core.system import FrozenClock, RandomIds

NOW = datetime(2026, 5, 1, tzinfo=UTC)
WALLET = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
FAN_WALLET = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
COIN, STAKING, POOL = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20


class StubChain:
    """The Chain port reads and builders the coin service uses; records every read; may be 'down'."""

    chain_id = 1337

    def __init__(self) -> None:
        self.height = 10
        self.calls: list[str] = []
        self.down = False
        self.state: dict[str, int] = {"rc": 1000 * 10**18, "re": 5 * 10**18, "balance": 50 * 10**18,
                                      "eth": 10**18, "allowance": 0, "staked": 0, "earned": 0}

    async def _read(self, what: str) -> int:
        self.calls.append(what)
        await asyncio.sleep(0)
        if self.down:
            raise ChainError("the node is unreachable", details={"reason": "unavailable"})
        return self.state[what]

    async def head(self) -> int:
        return self.height

    async def block(self, number: int) -> BlockRef:
        return BlockRef(number, "0x" + "ab" * 32, "0x" + "cd" * 32, int(NOW.timestamp()))

    async def identity(self) -> ChainIdentity:
        return ChainIdentity(1337, "0x" + "00" * 32)

    async def reserves(self, pool: str) -> tuple[int, int]:
        return await self._read("rc"), await self._read("re")

    async def token_balance(self, token: str, owner: str) -> int:
        return await self._read("balance")

    async def eth_balance(self, address: str) -> int:
        return await self._read("eth")

    async def allowance(self, token: str, owner: str, spender: str) -> int:
        return await self._read("allowance")

    async def staked_of(self, staking: str, user: str) -> int:
        return await self._read("staked")

    async def earned(self, staking: str, user: str) -> int:
        return await self._read("earned")

    def _tx(self, to: str, fn: str, value: int = 0) -> UnsignedTx:
        return UnsignedTx(to=to, data=fn, value=str(value), chain_id=self.chain_id)

    def approve(self, token: str, spender: str, amount: int) -> UnsignedTx:
        return self._tx(token, f"approve:{spender}:{amount}")

    def swap_eth_for_coin(self, pool: str, eth_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx:
        return self._tx(pool, f"buy:{min_out}:{deadline}", eth_in)

    def swap_coin_for_eth(self, pool: str, coin_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx:
        return self._tx(pool, f"sell:{coin_in}:{min_out}:{deadline}")

    def stake(self, staking: str, amount: int) -> UnsignedTx:
        return self._tx(staking, f"stake:{amount}")


class StubReads:
    def __init__(self, chain: StubChain):
        self._chain = chain

    async def token_info(self, token: str) -> TokenInfo:
        await self._chain._read("balance")
        return TokenInfo("Ann Coin", "ANN", 18, 2**100)

    async def total_supply(self, token: str) -> int:
        return await self._chain._read("rc")


class Env:
    def __init__(self) -> None:
        register_memory_chain_repositories()
        register_memory_coin_repository()
        self.db = InMemoryDatabase()
        self.clock = FrozenClock(NOW)
        self.chain = StubChain()
        self.jobs = ChainJobs(self.db.uow, self.clock, RandomIds())
        self.service = CoinService(uow=self.db.uow, chain=self.chain, reads=StubReads(self.chain),  # type: ignore[arg-type]
                                   jobs=self.jobs, clock=self.clock, ids=RandomIds())
        self.service.hook_into(self.jobs)

    async def user(self, uid: str, idx: int, *wallets: str, artist: bool = True) -> User:
        roles = {Role.FAN.value, Role.ARTIST.value} if artist else {Role.FAN.value}
        user = User(id=uid, index=idx, email=f"{uid}@x.io", display_name="fan-x", created_at=NOW,
                    roles=frozenset(roles))
        async with self.db.uow() as u:
            await u.users.add(user)
            for i, w in enumerate(wallets):
                await u.users.add_wallet(Wallet(w, uid, NOW.replace(minute=i)))
        return user

    async def finish(self, job_id: str, ok: bool = True) -> None:
        async with self.db.uow() as u:
            job = await u.chain_jobs.get(job_id)
            if ok:
                await self.jobs.confirm(u, job, {"coinAddress": COIN, "stakingAddress": STAKING, "poolAddress": POOL})
            else:
                await self.jobs.fail(u, job, "TX_REVERTED", "reverted")

    def events(self, kind: str) -> list[Any]:
        return [r.event for r in self.db.outbox if r.event.type == kind]


@pytest.fixture
def env() -> Env:
    return Env()


REQ = DeployCoinRequest(name="Ann Coin", symbol="ANN", initial_supply=str(10**24))


class TestDeploy:
    async def test_deploy_queues_a_job_and_the_confirmation_records_the_addresses(self, env: Env):
        """The job deploys to the first linked wallet; its confirmation records the addresses once, with an event."""
        ann = await env.user("usr_ann", 1, WALLET, FAN_WALLET)
        job = await env.service.deploy(ann, "usr_ann", REQ)
        stored = await env.jobs.load(job.id)
        assert stored.call == DeployCoin(artist=WALLET, name="Ann Coin", symbol="ANN", initial_supply=10**24)
        assert stored.op_key.startswith("coin:usr_ann:1:")
        pending = await env.service.get_coin("usr_ann")
        assert (pending.status, pending.address, pending.total_supply) == (CoinStatus.PENDING, None, str(10**24))
        await env.finish(job.id)
        view = await env.service.get_coin("usr_ann")
        assert (view.status, view.address, view.pool_address, view.total_supply) == \
            (CoinStatus.DEPLOYED, COIN, POOL, str(2**100))
        assert [e.data["coinAddress"] for e in env.events("coin.deployed")] == [COIN]

    async def test_owner_role_and_wallet_rules(self, env: Env):
        """Another user 403; the artist without the role 403; no wallet 409; unknown coin 404."""
        ann = await env.user("usr_ann", 1, WALLET)
        bob = await env.user("usr_bob", 2, artist=False)
        with pytest.raises(Forbidden):
            await env.service.deploy(bob, "usr_ann", REQ)
        with pytest.raises(Forbidden):
            await env.service.deploy(bob, "usr_bob", REQ)
        bob_artist = await env.user("usr_bo2", 3)
        with pytest.raises(Conflict):
            await env.service.deploy(bob_artist, "usr_bo2", REQ)
        with pytest.raises(NotFound):
            await env.service.get_coin("usr_ann")
        await env.service.deploy(ann, "usr_ann", REQ)
        with pytest.raises(Conflict):
            await env.service.deploy(ann, "usr_ann", REQ)

    async def test_a_failed_deploy_may_be_deployed_again_and_the_old_job_is_ignored(self, env: Env):
        """After a failure the artist deploys again (new op key); a retried old job never overwrites the new one."""
        ann = await env.user("usr_ann", 1, WALLET, FAN_WALLET)
        first = await env.service.deploy(ann, "usr_ann", REQ)
        await env.finish(first.id, ok=False)
        assert (await env.service.get_coin("usr_ann")).status is CoinStatus.FAILED
        await env.jobs.retry(first.id, "usr_ann")  # queued again: the coin is pending again
        assert (await env.service.get_coin("usr_ann")).status is CoinStatus.PENDING
        with pytest.raises(Conflict):
            await env.service.deploy(ann, "usr_ann", REQ)
        await env.finish(first.id, ok=False)
        second = await env.service.deploy(ann, "usr_ann", DeployCoinRequest("Ann Two", "ANNT", "5", FAN_WALLET))
        assert (await env.jobs.load(second.id)).op_key.startswith("coin:usr_ann:2:")
        await env.jobs.retry(first.id, "usr_ann")
        await env.finish(first.id)  # the stale job lands: ignored
        coin = await env.service.get_coin("usr_ann")
        assert (coin.status, coin.name, coin.owner_address) == (CoinStatus.PENDING, "Ann Two", FAN_WALLET)
        await env.finish(second.id)
        assert (await env.service.get_coin("usr_ann")).status is CoinStatus.DEPLOYED

    async def test_a_job_confirmed_while_nobody_listened_is_recorded_on_read(self, env: Env):
        """A confirmation without the hook (e.g. before a restart wired it) is picked up by the next read."""
        ann = await env.user("usr_ann", 1, WALLET)
        job = await env.service.deploy(ann, "usr_ann", REQ)
        bare = ChainJobs(env.db.uow, env.clock, RandomIds())
        async with env.db.uow() as u:
            await bare.confirm(u, await u.chain_jobs.get(job.id), {
                "coinAddress": COIN, "stakingAddress": STAKING, "poolAddress": POOL})
        assert (await env.jobs.load(job.id)).status is JobStatus.CONFIRMED
        pool = await env.service.pool("usr_ann")
        assert pool.address == POOL and pool.reserve_coin == str(1000 * 10**18)


class TestReads:
    async def deployed(self, env: Env) -> User:
        ann = await env.user("usr_ann", 1, WALLET)
        await env.finish((await env.service.deploy(ann, "usr_ann", REQ)).id)
        return ann

    async def test_reads_are_cached_for_one_block_only(self, env: Env):
        """Within a block the pool is read once (also by concurrent callers); the next block reads again."""
        await self.deployed(env)
        env.chain.calls.clear()
        views = await asyncio.gather(*(env.service.pool("usr_ann") for _ in range(5)))
        assert {v.reserve_eth for v in views} == {str(5 * 10**18)}
        assert env.chain.calls == ["rc", "re", "rc"]  # reserves + LP supply, once
        env.chain.state["re"] = 6 * 10**18
        assert (await env.service.pool("usr_ann")).reserve_eth == str(5 * 10**18)  # same block
        env.chain.height += 1
        view = await env.service.pool("usr_ann")
        assert view.reserve_eth == str(6 * 10**18) and view.block_number == 11
        assert int(view.price_eth) == 6 * 10**18 * 10**18 // (1000 * 10**18)

    async def test_chain_errors_propagate_and_are_not_cached(self, env: Env):
        """A failed read surfaces as ChainError and is not cached: once the node answers, the same block is read."""
        await self.deployed(env)
        env.chain.down = True
        with pytest.raises(ChainError):
            await env.service.pool("usr_ann")
        with pytest.raises(ChainError):
            await env.service.get_coin("usr_ann")
        env.chain.down = False
        assert (await env.service.pool("usr_ann")).reserve_coin == str(1000 * 10**18)

    async def test_swap_quote_and_approve_only_when_short(self, env: Env):
        """A sell adds approve only while the allowance is short; minAmountOut passes through unchanged."""
        ann = await self.deployed(env)
        out = await env.service.swap(ann, "usr_ann", SwapRequest("sell", str(10**18), "123"))
        assert [t.data.split(":")[0] for t in out.transactions] == ["approve", "sell"]
        assert out.transactions[1].data.startswith(f"sell:{10**18}:123:")
        rc, re = 1000 * 10**18, 5 * 10**18
        assert int(out.quote.amount_out) == 10**18 * 997 * re // (rc * 1000 + 10**18 * 997)
        env.chain.state["allowance"] = 10**18
        env.chain.height += 1
        again = await env.service.swap(ann, "usr_ann", SwapRequest("sell", str(10**18), "123"))
        assert [t.data.split(":")[0] for t in again.transactions] == ["sell"]
        stake = await env.service.stake(ann, "usr_ann", CoinAmountRequest(str(10**18)))
        assert [t.data for t in stake.transactions] == [f"stake:{10**18}"]


class TestStakingEvents:
    async def test_final_staking_logs_become_events_once(self, env: Env):
        """Indexed Staked/Unstaked logs become coin.* events with the staker's user id; a rerun adds nothing;
        logs above the final block wait."""
        ann = await env.user("usr_ann", 1, WALLET)
        await env.user("usr_fan", 2, FAN_WALLET, artist=False)
        await env.finish((await env.service.deploy(ann, "usr_ann", REQ)).id)

        def log(event: str, block: int, amount: int) -> ChainLog:
            return ChainLog(address=STAKING, event=event, args={"user": FAN_WALLET, "amount": amount},
                            block_number=block, block_hash="0x" + f"{block:064x}", tx_hash="0x" + f"{block:064x}",
                            log_index=0, topic_count=2)

        async with env.db.uow() as u:
            await u.chain_projection.record_log(log("Staked", 5, 70))
            await u.chain_projection.record_log(log("Unstaked", 8, 30))
            await u.chain_cursor.set_cursor(BlockRef(8, "0x" + f"{8:064x}", "", 0))
        env.chain.height = 9
        assert await env.service.relay_chain_events(confirmations=3) == 1  # block 8 is not final yet
        assert await env.service.relay_chain_events(confirmations=3) == 0
        env.chain.height = 11
        assert await env.service.relay_chain_events(confirmations=3) == 1
        assert await env.service.relay_chain_events(confirmations=0) == 0
        staked, unstaked = env.events("coin.staked"), env.events("coin.unstaked")
        assert [(e.data["amount"], e.data["userId"], e.data["blockNumber"]) for e in staked] == [("70", "usr_fan", 5)]
        assert [e.data["amount"] for e in unstaked] == ["30"]
        assert staked[0].id != unstaked[0].id


class TestBlockCache:
    async def test_single_flight_per_block_and_failures_forgotten(self):
        """Concurrent readers share one fetch; a failed fetch is retried; older blocks are dropped."""
        cache = BlockCache()
        calls: list[int] = []

        async def fetch(v: int) -> int:
            calls.append(v)
            await asyncio.sleep(0.01)
            return v

        got = await asyncio.gather(*(cache.get(1, ("k",), lambda: fetch(1)) for _ in range(4)))
        assert got == [1, 1, 1, 1] and calls == [1]

        async def boom() -> int:
            raise ChainError("down")

        with pytest.raises(ChainError):
            await cache.get(2, ("k",), boom)
        assert await cache.get(2, ("k",), lambda: fetch(2)) == 2
        await cache.get(3, ("k",), lambda: fetch(3))
        await cache.get(4, ("k",), lambda: fetch(4))
        assert len(cache) == 2  # blocks 3 and 4 only
