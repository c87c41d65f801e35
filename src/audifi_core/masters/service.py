"""The masters use cases: register on IPFS and chain, IPO, mint, shares, dividends, the token ledger.

Used by the HTTP edge and by other contexts:

* payments: :meth:`MasterService.get_master`, :meth:`~MasterService.ipo_status`,
  :meth:`~MasterService.reserve_tokens` / :meth:`~MasterService.release_tokens` /
  :meth:`~MasterService.mark_sold` (share checkout) and :meth:`~MasterService.allocate_from_treasury`
  (a paid checkout's shares to the buyer's custodial address, with a hold);
* V Studio: :meth:`~MasterService.get_master`, :meth:`~MasterService.lock_master`,
  :meth:`~MasterService.shares_held`.

The ledger calls live in ``ledger.py`` and the job hooks and scheduler tick in ``lifecycle.py``, both
mixed into :class:`MasterService`.

Chain side effects are chain jobs enqueued in the same unit of work as the change that needs them;
the job hooks installed by :meth:`MasterService.install_hooks` finish the story (``registered``,
``minted``) in the unit of work that confirms the job. Share and dividend reads come from the
indexer's projection of chain events, never from what we meant to send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from audifi_core.auth.model import Role
from audifi_core.chain.jobs import ChainJobs
from audifi_core.chain.model import (
    PLATFORM,
    ChainJobView,
    ClaimDividends,
    DeployMaster,
    JobKind,
    JobStatus,
    MintShares,
    custody_signer,
)
from audifi_core.chain.ports import Chain
from audifi_core.content import AUDIO_CONTENT_TYPES, ContentStore, StoredContent
from audifi_core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ValidationError,
)
from audifi_core.events import DomainEvent
from audifi_core.ports import Clock, IdGenerator
from audifi_core.uow import UnitOfWork

from .ledger import ShareLedger
from .lifecycle import CLAIM_CHUNK, DEPLOY_PREFIX, MINT_PREFIX, SUPPLY_PREFIX, Lifecycle, chunks
from .model import (
    MAX_TOTAL_SHARES,
    ClaimOutcome,
    DividendDeposit,
    DividendsView,
    Holder,
    Holding,
    Ipo,
    IpoStatus,
    IpoView,
    Master,
    MasterMetadata,
    MasterPage,
    MasterStatus,
    MasterView,
    Money,
    SharesView,
    Transactions,
)
from .validation import check_count, check_ipo, parse_address, parse_metadata, parse_wei

__all__ = ["MasterService", "MasterSettings", "DEPLOY_PREFIX", "SUPPLY_PREFIX"]



@attrs.frozen
class MasterSettings:
    daily_quota: int = 10
    upload_limit_bytes: int = 200 * 1024 * 1024
    cache_ttl: float = 1.0  # seconds a registered master may be served from this process's memory
    tick_batch: int = 50
    confirmations: int = 0  # blocks after which a chain log is final (the chain layer's setting)


class MasterService(ShareLedger, Lifecycle):
    def __init__(self, *, uow: Callable[..., UnitOfWork], jobs: ChainJobs, chain: Chain, content: ContentStore,
                 clock: Clock, ids: IdGenerator, settings: MasterSettings = MasterSettings()):
        self._uow = uow
        self._jobs = jobs
        self._chain = chain
        self._content = content
        self._clock = clock
        self._ids = ids
        self.settings = settings
        self._cache: dict[str, tuple[float, Master]] = {}
        self._loading: dict[str, asyncio.Future[Master]] = {}
        self._generation = 0  # bumped by every local write, so a load racing it is not cached

    # ================================================================== plumbing
    def _event(self, type_: str, data: dict[str, Any]) -> DomainEvent:
        return DomainEvent(id=self._ids.new_id("evt"), type=type_, occurred_at=self._clock.now(), data=data)

    def _forget(self, master_id: str) -> None:
        self._generation += 1
        self._cache.pop(master_id, None)

    @property
    def treasury(self) -> str:
        """The address minted shares go to: the platform signer's."""
        return self._chain.address_of(PLATFORM)

    def custodial_address(self, user_index: int) -> str:
        return self._chain.address_of(custody_signer(user_index))

    async def _load(self, master_id: str, *, cached: bool = False) -> Master:
        """The stored master; ``cached``: a registered master may come from this process's memory for
        ``cache_ttl`` seconds (writes made here forget it at once), loaded by one query however many
        requests miss together."""
        if not cached or self.settings.cache_ttl <= 0:
            return await self._fetch(master_id)
        hit = self._cache.get(master_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(master_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_and_cache(master_id))
            self._loading[master_id] = pending
            pending.add_done_callback(lambda _f: self._loading.pop(master_id, None))
        return await asyncio.shield(pending)

    async def _fetch_and_cache(self, master_id: str) -> Master:
        generation = self._generation
        m = await self._fetch(master_id)
        if m.status is MasterStatus.REGISTERED and generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[master_id] = (time.monotonic() + self.settings.cache_ttl, m)
        return m

    async def _fetch(self, master_id: str) -> Master:
        async with self._uow(readonly=True) as u:
            m = await u.masters.get(master_id)  # type: ignore[attr-defined]
        if m is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        return m

    @staticmethod
    def _own(m: Master, user_id: str) -> None:
        if m.artist_id != user_id:
            raise Forbidden("Only the master's artist may do this", details={"masterId": m.id})

    @staticmethod
    def _registered(m: Master) -> tuple[str, str]:
        if m.status is not MasterStatus.REGISTERED or not m.contract_address or not m.dividend_address:
            raise Conflict(f"Master {m.id} is not registered on-chain yet ({m.status.value})",
                           details={"masterId": m.id, "status": m.status.value})
        return m.contract_address, m.dividend_address

    async def _addresses_of(self, u: Any, user_id: str) -> tuple[list[str], str]:
        """The user's linked wallets (oldest link first) and custodial address."""
        user = await u.users.get(user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND", details={"userId": user_id})
        wallets = sorted(await u.users.wallets_of(user_id), key=lambda w: w.linked_at)
        return [w.address for w in wallets], self.custodial_address(user.index)

    # ================================================================== registration
    @staticmethod
    def parse_metadata(data: Any) -> MasterMetadata:
        return parse_metadata(data)

    def _quota_retry_after(self) -> int:
        now = self._clock.now().astimezone(UTC)
        tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return max(1, int((tomorrow - now).total_seconds()))

    def _over_quota(self) -> RateLimited:
        return RateLimited(f"At most {self.settings.daily_quota} masters per day",
                           retry_after=self._quota_retry_after(),
                           details={"limit": self.settings.daily_quota})

    async def check_quota(self, artist_id: str) -> None:
        """Fail early (429) when the artist's daily quota is used up; :meth:`register` counts atomically."""
        async with self._uow(readonly=True) as u:
            used = await u.masters.quota_used(artist_id, self._clock.now().astimezone(UTC).date())  # type: ignore[attr-defined]
        if used >= self.settings.daily_quota:
            raise self._over_quota()

    async def store_audio(self, chunks: AsyncIterator[bytes], *, filename: str, content_type: str) -> StoredContent:
        """Stream an audio file into the content store: audio types only (400), size-limited (413)."""
        ct = (content_type or "").split(";", 1)[0].strip().lower()
        if ct not in AUDIO_CONTENT_TYPES:
            raise ValidationError("Only audio files are accepted",
                                  fields={"audio": f"content type {ct or 'missing'} is not an audio type"})
        return await self._content.add_stream(chunks, name=filename or "audio", content_type=ct,
                                              max_bytes=self.settings.upload_limit_bytes)

    async def register(self, artist_id: str, metadata: MasterMetadata, audio: StoredContent) -> Master:
        """Pin the ERC-721 metadata JSON, then in ONE unit of work: count the quota, record the master
        ``pending`` and queue the chain job deploying its shares contract and dividend vault."""
        master_id = self._ids.new_id("mst")
        attributes: list[dict[str, Any]] = []
        for trait, value in (("Genre", metadata.genre), ("BPM", metadata.bpm), ("ISRC", metadata.isrc)):
            if value is not None:
                attributes.append({"trait_type": trait, "value": value})
        erc721 = {"name": metadata.title, "description": metadata.description or "",
                  "animation_url": f"ipfs://{audio.cid}", "attributes": attributes,
                  "properties": {"masterId": master_id, "artistId": artist_id, "audioSize": audio.size}}
        pinned = await self._content.add_json(erc721, name=f"{master_id}.json")
        now = self._clock.now()
        async with self._uow() as u:
            user = await u.users.get(artist_id)  # type: ignore[attr-defined]
            if user is None or not user.has_role(Role.ARTIST):
                raise Forbidden("The artist role is required")
            if not await u.masters.take_quota(artist_id, now.astimezone(UTC).date(),  # type: ignore[attr-defined]
                                              self.settings.daily_quota):
                raise self._over_quota()
            wallets, custodial = await self._addresses_of(u, artist_id)
            artist_address = wallets[0] if wallets else custodial
            job = await self._jobs.enqueue(u, JobKind.DEPLOY_MASTER, DEPLOY_PREFIX + master_id, artist_id,
                                           DeployMaster(master_id, artist_address, f"ipfs://{pinned.cid}", None))
            master = Master(id=master_id, artist_id=artist_id, title=metadata.title, metadata=metadata.to_dict(),
                            audio_cid=audio.cid, metadata_cid=pinned.cid, artist_address=artist_address,
                            status=MasterStatus.PENDING, created_at=now, updated_at=now, deploy_job_id=job.id)
            await u.masters.add(master)  # type: ignore[attr-defined]
        return master

    # ================================================================== reads
    async def get_master(self, master_id: str) -> Master:
        """The master (with its IPO) as stored now; ``NotFound`` code ``MASTER_NOT_FOUND``."""
        return await self._load(master_id)

    def ipo_status(self, master: Master) -> str:
        """``"scheduled"|"live"|"closed"`` by the clock and the confirmed mint count; ``Conflict`` without IPO."""
        if master.ipo is None:
            raise Conflict(f"Master {master.id} has no IPO", details={"masterId": master.id})
        return master.ipo.status(self._clock.now()).value

    def _visible(self, m: Master, viewer_id: str | None) -> Master:
        if m.status is not MasterStatus.REGISTERED and m.artist_id != viewer_id:
            raise NotFound(f"Master with ID {m.id} not found", code="MASTER_NOT_FOUND", details={"masterId": m.id})
        return m

    async def master_view(self, master_id: str, viewer_id: str | None = None) -> MasterView:
        """Public once registered; a pending or failed master only to its artist (404 to others)."""
        m = self._visible(await self._load(master_id, cached=True), viewer_id)
        return MasterView.of(m, self._clock.now())

    async def list_masters(self, *, artist_id: str | None, cursor: str | None, limit: int,
                           viewer_id: str | None) -> MasterPage:
        if not 1 <= limit <= 100:
            raise ValidationError("Invalid limit", fields={"limit": "from 1 to 100"})
        if cursor is not None and (not cursor.startswith("mst_") or len(cursor) > 64):
            raise ValidationError("Invalid cursor", fields={"cursor": "not a cursor of this list"})
        async with self._uow(readonly=True) as u:
            rows = await u.masters.list(artist_id=artist_id, before=cursor, limit=limit + 1,  # type: ignore[attr-defined]
                                        visible_to=viewer_id)
        now = self._clock.now()
        page = rows[:limit]
        return MasterPage(items=[MasterView.of(m, now) for m in page],
                          next_cursor=page[-1].id if len(rows) > limit else None)

    async def shares_view(self, master_id: str, viewer_id: str | None) -> SharesView:
        """Holders from the projection of ``Transfer`` events; the owner also sees each holder's user id."""
        m = self._visible(await self._load(master_id), viewer_id)
        total = m.ipo.total_shares if m.ipo is not None else 0
        if m.contract_address is None:
            return SharesView(total_shares=total, minted=0, holders=[])
        owner = viewer_id is not None and viewer_id == m.artist_id
        async with self._uow(readonly=True) as u:
            counts: dict[str, int] = await u.chain_projection.holders(m.contract_address)  # type: ignore[attr-defined]
            holders = []
            for address, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                uid = None
                if owner:
                    uid = await u.users.wallet_owner(address) or await u.masters.custodial_owner(address)  # type: ignore[attr-defined]
                holders.append(Holder(address=address, shares=n, user_id=uid))
        return SharesView(total_shares=total, minted=sum(counts.values()), holders=holders)

    async def shares_held(self, user_id: str, master_id: str) -> int:
        """Shares of the master at the user's linked wallets and custodial address (from the projection)."""
        m = await self._load(master_id)
        if m.contract_address is None:
            return 0
        async with self._uow(readonly=True) as u:
            wallets, custodial = await self._addresses_of(u, user_id)
            rows = await u.master_reads.holdings([*wallets, custodial])  # type: ignore[attr-defined]
        return sum(r.count for r in rows if r.contract.lower() == m.contract_address.lower())

    async def holdings(self, user_id: str) -> list[Holding]:
        """Every (master, address) the user holds shares at: linked wallets and the custodial address."""
        async with self._uow(readonly=True) as u:
            wallets, custodial = await self._addresses_of(u, user_id)
            rows = await u.master_reads.holdings([*wallets, custodial])  # type: ignore[attr-defined]
            out = []
            for r in rows:
                m = await u.masters.by_contract(r.contract)  # type: ignore[attr-defined]
                if m is None:
                    continue
                is_custodial = r.owner.lower() == custodial.lower()
                until = await u.masters.hold_until(user_id, m.id) if is_custodial else None  # type: ignore[attr-defined]
                out.append(Holding(master_id=m.id, title=m.title, address=r.owner, custodial=is_custodial,
                                   shares=r.count, token_ids=list(r.token_ids), withdrawable_at=until))
        out.sort(key=lambda h: (h.master_id, not h.custodial, h.address))
        return out

    async def dividends_view(self, master_id: str, address: str | None = None) -> DividendsView:
        """Deposits from the projection; ``perShare`` as the vault computes it; ``claimable`` read from the vault."""
        m = self._visible(await self._load(master_id), None)
        shares, vault = self._registered(m)
        if address is not None:
            address = parse_address(address)
        async with self._uow(readonly=True) as u:
            records = await u.chain_projection.dividends(vault)  # type: ignore[attr-defined]
            mints = await u.master_reads.mint_positions(shares)  # type: ignore[attr-defined]
            ids = await u.chain_projection.tokens_of(shares, address, MAX_TOTAL_SHARES) \
                if address is not None else []  # type: ignore[attr-defined]
        per_share = dust = 0
        for rec in records:
            supply = _count_before(mints, (rec.block_number, rec.log_index))
            if supply:
                per_share += (rec.amount + dust) // supply
                dust = (rec.amount + dust) % supply
        claimable = None
        if address is not None:
            total = 0
            for chunk in chunks(ids, CLAIM_CHUNK):
                total += await self._chain.claimable(vault, tuple(chunk))
            claimable = str(total)
        return DividendsView(total_deposited=str(sum(r.amount for r in records)), per_share=str(per_share),
                             deposits=[DividendDeposit(str(r.amount), r.tx_hash, r.at) for r in records],
                             claimable=claimable)

    # ================================================================== IPO and mint
    async def configure_ipo(self, user_id: str, master_id: str, *, total_shares: int, price: Money,
                            starts_at: datetime, ends_at: datetime, max_per_user: int | None) -> IpoView:
        """One IPO per master (409); queues the job that sets the contract's ``maxSupply`` to ``totalShares``."""
        now = self._clock.now()
        m = await self._load(master_id)
        self._own(m, user_id)
        max_per_user = check_ipo(total_shares=total_shares, price=price, starts_at=starts_at, ends_at=ends_at,
                                 max_per_user=max_per_user, now=now)
        self._registered(m)
        ipo = Ipo(master_id=master_id, total_shares=total_shares, price=price, starts_at=starts_at, ends_at=ends_at,
                  max_per_user=max_per_user, created_at=now)
        async with self._uow() as u:
            if not await u.masters.add_ipo(ipo):  # type: ignore[attr-defined]
                raise Conflict(f"Master {master_id} has an IPO already", details={"masterId": master_id})
            job = await self._jobs.enqueue(u, JobKind.DEPLOY_MASTER, SUPPLY_PREFIX + master_id, user_id,
                                           DeployMaster(master_id, m.artist_address, m.token_uri, total_shares))
            await u.masters.set_supply_job(master_id, job.id)  # type: ignore[attr-defined]
        self._forget(master_id)
        return IpoView.of(attrs.evolve(ipo, supply_job_id=job.id), now)

    async def mint(self, user_id: str, master_id: str, count: int) -> ChainJobView:
        """Queue a mint of ``count`` (1…250) shares to the treasury. The cap is a conditional update of
        the requested count (409 beyond ``totalShares``) and, on-chain, the contract's ``maxSupply``."""
        check_count(count)
        m = await self._load(master_id)
        self._own(m, user_id)
        shares, _ = self._registered(m)
        if m.ipo is None:
            raise Conflict("Configure the IPO before minting", details={"masterId": master_id})
        if m.ipo.status(self._clock.now()) is IpoStatus.CLOSED:
            raise Conflict("The IPO is closed", details={"masterId": master_id})
        async with self._uow() as u:
            upto = await u.masters.request_mint(master_id, count)  # type: ignore[attr-defined]
            if upto is None:
                ipo = (await u.masters.get(master_id)).ipo  # type: ignore[attr-defined]
                raise Conflict(f"Minting {count} more would exceed the {ipo.total_shares} shares of the IPO",
                               details={"masterId": master_id, "totalShares": ipo.total_shares,
                                        "requested": ipo.mint_requested, "count": count})
            await self._resume_supply_job(u, m.ipo)
            job = await self._jobs.enqueue(u, JobKind.MINT, f"{MINT_PREFIX}{master_id}:{upto - count + 1}-{upto}",
                                           user_id, MintShares(shares, self.treasury, count))
        return job.view()

    async def _resume_supply_job(self, u: Any, ipo: Ipo) -> bool:
        """Queue the max-supply job again when it failed (a later mint depends on it)."""
        if ipo.supply_job_id is None:
            return False
        job = await u.chain_jobs.get(ipo.supply_job_id)
        if job is None or job.status is not JobStatus.FAILED:
            return False
        await u.chain_jobs.update(attrs.evolve(job, status=JobStatus.QUEUED, error=None, attempts=job.attempts + 1,
                                               updated_at=self._clock.now()))
        await u.chain_jobs.notify()
        return True

    # ================================================================== dividends
    async def deposit(self, user_id: str, master_id: str, amount: Any, address: str | None) -> Transactions:
        """The owner's deposit as an unsigned transaction from one of their linked wallets."""
        wei = parse_wei(amount)
        m = await self._load(master_id)
        self._own(m, user_id)
        _, vault = self._registered(m)
        async with self._uow(readonly=True) as u:
            wallets, _ = await self._addresses_of(u, user_id)
        if not wallets:
            raise Conflict("Link a wallet first: deposits are sent from the artist's own wallet")
        if address is not None and parse_address(address).lower() not in {w.lower() for w in wallets}:
            raise Forbidden("That address is not one of your linked wallets", details={"address": address})
        if m.ipo is None or m.ipo.minted == 0:
            raise Conflict("No shares are minted yet: there is nobody to pay", details={"masterId": master_id})
        return Transactions([self._chain.dividend_deposit(vault, wei)])

    async def claim(self, user_id: str, master_id: str, address: str | None = None,
                    to: str | None = None) -> ClaimOutcome:
        """Claim at ``address`` (a linked wallet, default the first; or the custodial address): unsigned
        transactions for a wallet, a chain job signed by the custodial key (paying ``to``: the custodial
        address or a linked wallet) otherwise. Only ids that are owed something are claimed."""
        m = await self._load(master_id)
        shares, vault = self._registered(m)
        async with self._uow(readonly=True) as u:
            wallets, custodial = await self._addresses_of(u, user_id)
            user = await u.users.get(user_id)  # type: ignore[attr-defined]
            if address is None:
                address = wallets[0] if wallets else custodial
            address = parse_address(address)
            is_custodial = address.lower() == custodial.lower()
            if not is_custodial and address.lower() not in {w.lower() for w in wallets}:
                raise Forbidden("That address is not yours", details={"address": address})
            ids = await u.chain_projection.tokens_of(shares, address, MAX_TOTAL_SHARES)  # type: ignore[attr-defined]
        if not ids:
            raise Conflict(f"No shares of master {master_id} at {address}",
                           details={"masterId": master_id, "address": address})
        owed = [c for c in chunks(ids, CLAIM_CHUNK) if await self._chain.claimable(vault, tuple(c)) > 0]
        if not owed:
            raise Conflict("Nothing to claim", details={"masterId": master_id, "address": address, "claimable": "0"})
        if not is_custodial:
            return ClaimOutcome(transactions=[self._chain.dividend_claim(vault, tuple(c), address) for c in owed])
        pay_to = custodial if to is None else parse_address(to, "to")
        if pay_to.lower() not in {custodial.lower(), *(w.lower() for w in wallets)}:
            raise Forbidden("Dividends are paid to your custodial address or a linked wallet", details={"to": to})
        async with self._uow() as u:
            await u.masters.remember_custodial(custodial, user_id)  # type: ignore[attr-defined]
            job = await self._jobs.enqueue(u, JobKind.CLAIM, f"master:claim:{master_id}:{self._ids.new_id('clm')}",
                                           user_id, ClaimDividends(vault, tuple(owed[0]), pay_to,
                                                                   custody_signer(user.index)))
        return ClaimOutcome(job=job.view())


def _count_before(positions: list[tuple[int, int]], at: tuple[int, int]) -> int:
    lo, hi = 0, len(positions)
    while lo < hi:
        mid = (lo + hi) // 2
        if positions[mid] < at:
            lo = mid + 1
        else:
            hi = mid
    return lo
