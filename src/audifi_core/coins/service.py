"""The coin use cases: deploy an artist's coin (a chain job), read it from chain, and build the
unsigned transactions users sign in their own wallets (liquidity, swaps, stakes, rewards).

Rules (API.md "Artist coin, liquidity, staking"):

* One coin per artist: the coin row (unique per artist) and its ``deploy_coin`` job are written in
  one unit of work; the job's confirmation records the coin, staking and pool addresses.
* ``address?`` must be one of the caller's linked wallets (403); with none linked → 409. Amounts
  above the wallet's balance (or stake) → 400 before anything is built. ``approve`` is added only
  when the allowance is short. The client's ``minAmountOut`` goes on-chain unchanged.
* Chain reads are cached per block number, so nothing older than the current block is served.
* Staking logs the indexer projected (``Staked``/``Unstaked``/``RewardPaid``) become domain events
  ``coin.staked``/``coin.unstaked``/``coin.reward_paid`` once final, each exactly once.

Domain events (``data``; amounts are decimal strings of base units):

* ``coin.deployed`` {artistId, coinAddress, stakingAddress, poolAddress, ownerAddress, name, symbol,
  initialSupply}
* ``coin.staked`` / ``coin.unstaked`` / ``coin.reward_paid`` {artistId, coinAddress, stakingAddress,
  address, userId (the wallet's user, or null), amount, txHash, logIndex, blockNumber}; the event id
  is derived from (genesis hash, tx hash, log index), so a replay has the same id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from ..auth.model import Role, User
from ..chain.jobs import ChainJobs
from ..chain.model import ChainJob, ChainJobView, DeployCoin, JobKind, JobStatus, UnsignedTx
from ..chain.ports import Chain
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..events import DomainEvent
from ..ports import Clock, IdGenerator
from ..uow import UnitOfWork, UnitOfWorkFactory
from .cache import BlockCache
from .model import (
    MAX_UINT256,
    ArtistCoin,
    CoinAmountRequest,
    CoinStatus,
    CoinTransactions,
    CoinView,
    DeployCoinRequest,
    LiquidityRequest,
    PoolView,
    RewardsRequest,
    StakeView,
    SwapOut,
    SwapQuote,
    SwapRequest,
    amount_out,
    apply_slippage,
    first_deposit_ok,
    liquidity_used,
    parse_address,
    parse_amount,
    price_eth,
    validate_coin_params,
)
from .ports import CoinReads, EventCursor, TokenInfo

__all__ = ["CoinService", "CoinSettings", "STAKING_EVENTS", "EVENTS_CONSUMER"]

log = logging.getLogger("audifi.coins")
T = TypeVar("T")

#: staking contract log → domain event type
STAKING_EVENTS = {"Staked": "coin.staked", "Unstaked": "coin.unstaked", "RewardPaid": "coin.reward_paid"}
EVENTS_CONSUMER = "coins.chain-events"
MAX_DURATION = 10 * 365 * 24 * 3600


@attrs.frozen
class CoinSettings:
    default_deadline_seconds: int = 600
    default_slippage_bps: int = 50  # liquidity minimums when the client gives none
    cache_entries: int = 4096


class CoinService:
    def __init__(self, *, uow: UnitOfWorkFactory, chain: Chain, reads: CoinReads, jobs: ChainJobs, clock: Clock,
                 ids: IdGenerator, settings: CoinSettings = CoinSettings()):
        self._uow = uow
        self._chain = chain
        self._reads = reads
        self._jobs = jobs
        self._clock = clock
        self._ids = ids
        self.settings = settings
        self.cache = BlockCache(settings.cache_entries)
        self._genesis: str | None = None

    def hook_into(self, jobs: ChainJobs) -> None:
        """Record the addresses when a deploy job is confirmed, and its failure when it fails."""
        jobs.on_confirmed(JobKind.DEPLOY_COIN, self.on_deploy_confirmed)
        jobs.on_failed(JobKind.DEPLOY_COIN, self.on_deploy_failed)

    # ================================================================== deploy
    async def deploy(self, user: User, artist_id: str, req: DeployCoinRequest) -> ChainJobView:
        """Queue the ERC-20 + staking + pool deployment for ``artist_id`` (only that artist may)."""
        self.require_owner(user, artist_id, artist_role=True)
        supply = validate_coin_params(req.name, req.symbol, req.initial_supply)
        now = self._clock.now()
        async with self._uow() as u:
            wallet = await self._wallet_in(u, user.id, req.address)
            existing: ArtistCoin | None = await u.coins.get(artist_id)  # type: ignore[attr-defined]
            attempt = 1
            if existing is not None:
                status = await self._status_in(u, existing)
                if status is not CoinStatus.FAILED:
                    raise Conflict("This artist has a coin already", details={
                        "artistId": artist_id, "status": status.value, "jobId": existing.job_id})
                attempt = existing.attempt + 1
            call = DeployCoin(artist=wallet, name=req.name, symbol=req.symbol, initial_supply=supply)
            # A fresh operation key per attempt: a job left from an earlier attempt (or an earlier dev
            # chain) is never mistaken for this one; the chain still refuses a second coin per wallet.
            op_key = f"coin:{artist_id}:{attempt}:{self._ids.new_id('dep')}"
            job = await self._jobs.enqueue(u, JobKind.DEPLOY_COIN, op_key, user.id, call)
            coin = ArtistCoin(artist_id=artist_id, name=req.name, symbol=req.symbol, initial_supply=supply,
                              owner_address=wallet, job_id=job.id, status=CoinStatus.PENDING, created_at=now,
                              updated_at=now, attempt=attempt)
            if existing is None:
                await u.coins.add(coin)  # type: ignore[attr-defined]
            elif not await u.coins.replace_failed(coin, existing.job_id):  # type: ignore[attr-defined]
                raise Conflict("This artist has a coin already", details={"artistId": artist_id})
        return job.view()

    async def on_deploy_confirmed(self, uow: UnitOfWork, job: ChainJob) -> None:
        coin: ArtistCoin | None = await uow.coins.by_job(job.id)  # type: ignore[attr-defined]
        result = job.result or {}
        if coin is None or coin.job_id != job.id:
            log.info("deploy_coin job %s confirmed for no current coin record: ignored", job.id)
            return
        coin = coin.deployed(result["coinAddress"], result["stakingAddress"], result["poolAddress"],
                             self._clock.now())
        await uow.coins.update(coin)  # type: ignore[attr-defined]
        uow.emit(DomainEvent(id=self._ids.new_id("evt"), type="coin.deployed", occurred_at=self._clock.now(),
                             data={"artistId": coin.artist_id, "coinAddress": coin.coin_address,
                                   "stakingAddress": coin.staking_address, "poolAddress": coin.pool_address,
                                   "ownerAddress": coin.owner_address, "name": coin.name, "symbol": coin.symbol,
                                   "initialSupply": str(coin.initial_supply)}))

    async def on_deploy_failed(self, uow: UnitOfWork, job: ChainJob) -> None:
        coin: ArtistCoin | None = await uow.coins.by_job(job.id)  # type: ignore[attr-defined]
        if coin is not None and coin.job_id == job.id and coin.status is CoinStatus.PENDING:
            await uow.coins.update(coin.failed(self._clock.now()))  # type: ignore[attr-defined]

    # ================================================================== reads
    async def get_coin(self, artist_id: str) -> CoinView:
        """The coin as recorded, with name/symbol/decimals/totalSupply read from chain once deployed."""
        coin, status = await self._load(artist_id)
        if status is not CoinStatus.DEPLOYED:
            return CoinView(address=None, name=coin.name, symbol=coin.symbol, decimals=18,
                            total_supply=str(coin.initial_supply), staking_address=None, pool_address=None,
                            status=status, job_id=coin.job_id, owner_address=coin.owner_address)
        assert coin.coin_address is not None
        block = await self._chain.head()
        address = coin.coin_address
        info: TokenInfo = await self.cache.get(block, ("token", address), lambda: self._reads.token_info(address))
        return CoinView(address=coin.coin_address, name=info.name, symbol=info.symbol, decimals=info.decimals,
                        total_supply=str(info.total_supply), staking_address=coin.staking_address,
                        pool_address=coin.pool_address, status=status, job_id=coin.job_id,
                        owner_address=coin.owner_address)

    async def pool(self, artist_id: str) -> PoolView:
        coin = await self._deployed(artist_id)
        block = await self._chain.head()
        rc, re, lp = await self._pool_state(block, coin)
        price = price_eth(rc, re)
        assert coin.pool_address is not None
        return PoolView(address=coin.pool_address, reserve_coin=str(rc), reserve_eth=str(re),
                        price_eth=None if price is None else str(price), total_liquidity=str(lp),
                        block_number=block)

    async def stakes(self, artist_id: str, address: str) -> StakeView:
        parse_address(address)
        coin = await self._deployed(artist_id)
        block = await self._chain.head()
        staked, earned = await self._stake_state(block, coin, address)
        return StakeView(staked=str(staked), rewards=str(earned), block_number=block)

    # ================================================================== unsigned transactions
    async def liquidity(self, user: User, artist_id: str, req: LiquidityRequest) -> CoinTransactions:
        """approve (when short) + addLiquidity from the user's wallet; LP tokens go to that wallet."""
        coin_amount = parse_amount(req.coin_amount, "coinAmount")
        eth_amount = parse_amount(req.eth_amount, "ethAmount")
        min_coin = None if req.min_coin is None else parse_amount(req.min_coin, "minCoin", minimum=0)
        min_eth = None if req.min_eth is None else parse_amount(req.min_eth, "minEth", minimum=0)
        coin = await self._deployed(artist_id)
        wallet = await self._wallet(user.id, req.address)
        block = await self._chain.head()
        deadline = await self._deadline(block, req.deadline)
        rc, re, lp = await self._pool_state(block, coin)
        await self._need_coin(block, coin, wallet, coin_amount, "coinAmount")
        await self._need_eth(block, wallet, eth_amount, "ethAmount")
        empty = rc == 0 or re == 0
        if empty and not first_deposit_ok(coin_amount, eth_amount):
            raise ValidationError("The first deposit is too small", fields={
                "coinAmount": "sqrt(coinAmount * ethAmount) must exceed 1000 (the locked minimum liquidity)"})
        coin_used, eth_used = liquidity_used(coin_amount, eth_amount, rc, re)
        if not empty and min(coin_used * lp // rc, eth_used * lp // re) == 0:
            raise ValidationError("The deposit is too small", fields={"coinAmount": "it would mint no LP tokens"})
        bps = self.settings.default_slippage_bps
        min_coin = apply_slippage(coin_used, bps) if min_coin is None else min_coin
        min_eth = apply_slippage(eth_used, bps) if min_eth is None else min_eth
        assert coin.pool_address is not None
        txs = await self._approve_if_short(block, coin, wallet, coin.pool_address, coin_amount)
        txs.append(self._chain.add_liquidity(coin.pool_address, coin_amount, eth_amount, min_coin, min_eth, wallet,
                                             deadline))
        return CoinTransactions(txs, wallet)

    async def swap(self, user: User, artist_id: str, req: SwapRequest) -> SwapOut:
        """buy: ETH → coin (swapExactEthForCoin); sell: approve (when short) + swapExactCoinForEth."""
        if req.side not in ("buy", "sell"):
            raise ValidationError("Invalid swap", fields={"side": "buy or sell"})
        amount_in = parse_amount(req.amount_in, "amountIn")
        min_out = parse_amount(req.min_amount_out, "minAmountOut", minimum=0)
        coin = await self._deployed(artist_id)
        wallet = await self._wallet(user.id, req.address)
        block = await self._chain.head()
        deadline = await self._deadline(block, req.deadline)
        rc, re, _ = await self._pool_state(block, coin)
        if rc == 0 or re == 0:
            raise Conflict("The pool has no liquidity yet", details={"artistId": artist_id})
        assert coin.pool_address is not None
        if req.side == "buy":
            await self._need_eth(block, wallet, amount_in, "amountIn")
            out = amount_out(amount_in, re, rc)
            after = (rc - out, re + amount_in)
            txs = [self._chain.swap_eth_for_coin(coin.pool_address, amount_in, min_out, wallet, deadline)]
        else:
            await self._need_coin(block, coin, wallet, amount_in, "amountIn")
            out = amount_out(amount_in, rc, re)
            after = (rc + amount_in, re - out)
            txs = await self._approve_if_short(block, coin, wallet, coin.pool_address, amount_in)
            txs.append(self._chain.swap_coin_for_eth(coin.pool_address, amount_in, min_out, wallet, deadline))
        if out == 0:
            raise ValidationError("The swap is too small", fields={"amountIn": "the pool would give nothing for it"})
        price_after = price_eth(*after)
        quote = SwapQuote(side=req.side, amount_in=str(amount_in), amount_out=str(out), min_amount_out=str(min_out),
                          fee=str(amount_in * 3 // 1000), price_eth=str(price_eth(rc, re)),
                          price_eth_after=str(price_after or 0), reserve_coin=str(rc), reserve_eth=str(re),
                          deadline=deadline, block_number=block)
        return SwapOut(txs, quote, wallet)

    async def stake(self, user: User, artist_id: str, req: CoinAmountRequest) -> CoinTransactions:
        amount = parse_amount(req.amount, "amount")
        coin = await self._deployed(artist_id)
        wallet = await self._wallet(user.id, req.address)
        block = await self._chain.head()
        await self._need_coin(block, coin, wallet, amount, "amount")
        assert coin.staking_address is not None
        txs = await self._approve_if_short(block, coin, wallet, coin.staking_address, amount)
        txs.append(self._chain.stake(coin.staking_address, amount))
        return CoinTransactions(txs, wallet)

    async def unstake(self, user: User, artist_id: str, req: CoinAmountRequest) -> CoinTransactions:
        amount = parse_amount(req.amount, "amount")
        coin = await self._deployed(artist_id)
        wallet = await self._wallet(user.id, req.address)
        block = await self._chain.head()
        staked, _ = await self._stake_state(block, coin, wallet)
        if amount > staked:
            raise ValidationError("Amount above the staked balance", fields={
                "amount": f"above the wallet's staked balance of {staked}"}, details={"staked": str(staked)})
        assert coin.staking_address is not None
        return CoinTransactions([self._chain.unstake(coin.staking_address, amount)], wallet)

    async def rewards(self, user: User, artist_id: str, req: RewardsRequest) -> CoinTransactions:
        """approve (when short) + notifyRewardAmount, from the coin's artist wallet (the staking artist)."""
        self.require_owner(user, artist_id)
        amount = parse_amount(req.amount, "amount")
        if isinstance(req.duration_seconds, bool) or not 1 <= req.duration_seconds <= MAX_DURATION:
            raise ValidationError("Invalid duration", fields={"durationSeconds": f"1…{MAX_DURATION} seconds"})
        if amount < req.duration_seconds:
            raise ValidationError("Reward too small", fields={
                "amount": "must be at least durationSeconds base units (a reward rate of at least 1 per second)"})
        coin = await self._deployed(artist_id)
        async with self._uow(readonly=True) as u:
            wallets = await u.users.wallets_of(user.id)
        linked = {w.address.lower(): w.address for w in wallets}
        if req.address is not None:
            wallet = linked.get(parse_address(req.address))
            if wallet is None:
                raise Forbidden("This address is not one of your linked wallets", details={"address": req.address})
            if wallet.lower() != coin.owner_address.lower():
                raise Conflict("Rewards are funded from the coin's artist wallet",
                               details={"address": wallet, "artistWallet": coin.owner_address})
        else:
            if coin.owner_address.lower() not in linked:
                raise Conflict("Link the coin's artist wallet to fund rewards",
                               details={"artistWallet": coin.owner_address})
            wallet = coin.owner_address
        block = await self._chain.head()
        await self._need_coin(block, coin, wallet, amount, "amount")
        assert coin.staking_address is not None
        txs = await self._approve_if_short(block, coin, wallet, coin.staking_address, amount)
        txs.append(self._chain.notify_reward_amount(coin.staking_address, amount, req.duration_seconds))
        return CoinTransactions(txs, wallet)

    # ================================================================== staking events
    async def relay_chain_events(self, confirmations: int = 0) -> int:
        """Turn newly indexed, final staking logs into domain events (once each); returns how many."""
        head = await self._chain.head()
        if self._genesis is None:
            self._genesis = (await self._chain.identity()).genesis_hash
        async with self._uow(readonly=True) as u:
            indexed = await u.chain_cursor.cursor()  # type: ignore[attr-defined]
            cursor: EventCursor = await u.coins.event_cursor() or EventCursor(-1, -1)  # type: ignore[attr-defined]
        if indexed is None or min(indexed.number, head - confirmations) <= cursor.block_number:
            return 0  # nothing final was indexed since the last run
        emitted = 0
        async with self._uow() as u:
            indexed = await u.chain_cursor.cursor()  # type: ignore[attr-defined]
            final = min(indexed.number, head - confirmations)
            cursor = await u.coins.event_cursor() or EventCursor(-1, -1)  # type: ignore[attr-defined]
            if final <= cursor.block_number:
                return 0
            found: list[tuple[Any, str, ArtistCoin]] = []
            for coin in await u.coins.deployed():  # type: ignore[attr-defined]
                for event in STAKING_EVENTS:
                    for rec in await u.chain_projection.dividends(coin.staking_address, event):  # type: ignore[attr-defined]
                        if cursor.block_number < rec.block_number <= final:
                            found.append((rec, event, coin))
            found.sort(key=lambda x: (x[0].block_number, x[0].log_index))
            for rec, event, coin in found:
                eid = "evt_" + hashlib.sha256(f"{self._genesis}:{rec.tx_hash}:{rec.log_index}".encode()).hexdigest()[:26]
                if not await u.processed.mark(EVENTS_CONSUMER, eid):
                    continue
                user_id = await u.users.wallet_owner(rec.account) if rec.account else None
                u.emit(DomainEvent(id=eid, type=STAKING_EVENTS[event], occurred_at=rec.at or self._clock.now(),
                                   data={"artistId": coin.artist_id, "coinAddress": coin.coin_address,
                                         "stakingAddress": coin.staking_address, "address": rec.account,
                                         "userId": user_id, "amount": str(rec.amount), "txHash": rec.tx_hash,
                                         "logIndex": rec.log_index, "blockNumber": rec.block_number}))
                emitted += 1
            await u.coins.set_event_cursor(EventCursor(final, 2**31 - 1))  # type: ignore[attr-defined]
        return emitted

    # ================================================================== helpers
    @staticmethod
    def require_owner(user: User, artist_id: str, *, artist_role: bool = False) -> None:
        """403 unless ``user`` is that artist (and, with ``artist_role``, has the artist role)."""
        if user.id != artist_id:
            raise Forbidden("Only the artist may do this for their coin", details={"artistId": artist_id})
        if artist_role and not user.has_role(Role.ARTIST):
            raise Forbidden("The artist role is required")

    async def _coin_in(self, u: UnitOfWork, artist_id: str) -> ArtistCoin:
        coin: ArtistCoin | None = await u.coins.get(artist_id)  # type: ignore[attr-defined]
        if coin is None:
            raise NotFound(f"Artist {artist_id} has no coin", code="COIN_NOT_FOUND", details={"artistId": artist_id})
        return coin

    @staticmethod
    async def _status_in(u: UnitOfWork, coin: ArtistCoin) -> CoinStatus:
        """Deployed once recorded; otherwise what its job says (a retried job is pending again)."""
        if coin.status is CoinStatus.DEPLOYED:
            return coin.status
        job: ChainJob | None = await u.chain_jobs.get(coin.job_id)  # type: ignore[attr-defined]
        if job is None or job.status is JobStatus.FAILED:
            return CoinStatus.FAILED
        return CoinStatus.PENDING

    async def _load(self, artist_id: str) -> tuple[ArtistCoin, CoinStatus]:
        """The coin and its status; a job confirmed while no hook listened (a restart) is recorded now."""
        async with self._uow(readonly=True) as u:
            coin = await self._coin_in(u, artist_id)
            status = await self._status_in(u, coin)
            job: ChainJob | None = None
            if status is CoinStatus.PENDING:
                job = await u.chain_jobs.get(coin.job_id)  # type: ignore[attr-defined]
        if job is not None and job.status is JobStatus.CONFIRMED and job.result:
            async with self._uow() as u:
                current: ArtistCoin | None = await u.coins.get(artist_id)  # type: ignore[attr-defined]
                if current is not None and current.job_id == job.id and current.status is not CoinStatus.DEPLOYED:
                    await self.on_deploy_confirmed(u, job)
                coin = await self._coin_in(u, artist_id)
                status = await self._status_in(u, coin)
        return coin, status

    async def _deployed(self, artist_id: str) -> ArtistCoin:
        coin, status = await self._load(artist_id)
        if status is not CoinStatus.DEPLOYED:
            raise Conflict("The coin is not deployed yet", details={
                "artistId": artist_id, "status": status.value, "jobId": coin.job_id})
        return coin

    async def _wallet(self, user_id: str, address: str | None) -> str:
        async with self._uow(readonly=True) as u:
            return await self._wallet_in(u, user_id, address)

    @staticmethod
    async def _wallet_in(u: UnitOfWork, user_id: str, address: str | None) -> str:
        """``address`` when it is one of the user's linked wallets (else 403); default the first linked."""
        wanted = None if address is None else parse_address(address)
        wallets = sorted(await u.users.wallets_of(user_id), key=lambda w: w.linked_at)
        if wanted is not None:
            for w in wallets:
                if w.address.lower() == wanted:
                    return w.address
            raise Forbidden("This address is not one of your linked wallets", details={"address": address})
        if not wallets:
            raise Conflict("Link a wallet first (POST /auth/wallet/link)", details={"reason": "no_linked_wallet"})
        return wallets[0].address

    async def _deadline(self, block: int, given: int | None) -> int:
        ref = await self.cache.get(block, ("block",), lambda: self._chain.block(block))
        now = max(int(self._clock.now().timestamp()), ref.timestamp if ref is not None else 0)
        if given is None:
            return now + self.settings.default_deadline_seconds
        if isinstance(given, bool) or not now < given <= MAX_UINT256:
            raise ValidationError("Invalid deadline", fields={"deadline": "unix seconds in the future"})
        return given

    async def _cached(self, block: int, key: tuple[Any, ...], fetch: Callable[[], Awaitable[T]]) -> T:
        return await self.cache.get(block, key, fetch)

    async def _pool_state(self, block: int, coin: ArtistCoin) -> tuple[int, int, int]:
        pool = coin.pool_address
        assert pool is not None

        async def fetch() -> tuple[int, int, int]:
            rc, re = await self._chain.reserves(pool)
            return rc, re, await self._reads.total_supply(pool)

        return await self._cached(block, ("pool", pool), fetch)

    async def _stake_state(self, block: int, coin: ArtistCoin, address: str) -> tuple[int, int]:
        staking = coin.staking_address
        assert staking is not None

        async def fetch() -> tuple[int, int]:
            return await self._chain.staked_of(staking, address), await self._chain.earned(staking, address)

        return await self._cached(block, ("stake", staking, address.lower()), fetch)

    async def _need_coin(self, block: int, coin: ArtistCoin, wallet: str, amount: int, field: str) -> None:
        token = coin.coin_address
        assert token is not None
        have = await self._cached(block, ("balance", token, wallet.lower()),
                                  lambda: self._chain.token_balance(token, wallet))
        if amount > have:
            raise ValidationError("Amount above the wallet's balance", fields={
                field: f"above the wallet's {coin.symbol} balance of {have}"}, details={"balance": str(have)})

    async def _need_eth(self, block: int, wallet: str, amount: int, field: str) -> None:
        have = await self._cached(block, ("eth", wallet.lower()), lambda: self._chain.eth_balance(wallet))
        if amount > have:
            raise ValidationError("Amount above the wallet's balance", fields={
                field: f"above the wallet's ETH balance of {have}"}, details={"balance": str(have)})

    async def _approve_if_short(self, block: int, coin: ArtistCoin, wallet: str, spender: str,
                                amount: int) -> list[UnsignedTx]:
        token = coin.coin_address
        assert token is not None
        allowed = await self._cached(block, ("allowance", token, wallet.lower(), spender.lower()),
                                     lambda: self._chain.allowance(token, wallet, spender))
        return [self._chain.approve(token, spender, amount)] if allowed < amount else []
