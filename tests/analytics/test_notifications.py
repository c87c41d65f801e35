"""The notification consumer and its mail: who gets what, once; mail retried, never sent twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audifi_adapters.analytics import register_memory_repositories
from audifi_adapters.analytics_context import PlatformMasterDirectory
from audifi_adapters.events import idempotent_consumer
from audifi_adapters.memory import InMemoryDatabase, OutboxMailer
from audifi_core.auth.model import User
from audifi_core.events import DomainEvent
from audifi_core.notifications import NotificationService, format_money, format_wei
from audifi_core.ports import Mail
from audifi_core.system import FrozenClock, RandomIds

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class FlakyMailer(OutboxMailer):
    def __init__(self, clock, fail: int):
        super().__init__(clock)
        self.fail = fail

    async def send(self, mail: Mail) -> None:
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("smtp down")
        await super().send(mail)


@pytest.fixture
async def world():
    register_memory_repositories()
    db = InMemoryDatabase()
    clock = FrozenClock(T0)
    async with db.uow() as u:
        for i, name in enumerate(["art", "buyer", "voter", "other"]):
            await u.users.add(User(id=f"usr_{name}", index=i, email=f"{name}@x.io", display_name=name,
                                   created_at=T0))
        await u.analytics.set_master_artist("m1", "usr_art")
    mailer = FlakyMailer(clock, fail=0)
    service = NotificationService(db.uow, mailer, clock, RandomIds(), PlatformMasterDirectory(None, db.uow))
    consume = idempotent_consumer("notifications", db.uow, service.on_event)
    return db, service, mailer, consume


def ev(eid: str, etype: str, **data) -> DomainEvent:
    return DomainEvent(id=eid, type=etype, occurred_at=T0, data=data)


async def inbox(service, user: str) -> list[str]:
    return [f"{i.kind.value}" for i in (await service.inbox(user, None, 100)).items]


class TestRecipients:
    async def test_each_event_reaches_its_people_once(self, world):
        """Receipts to the payer, dividends to holders, IPO to the artist and holders, locks to voters; a
        replayed event adds nothing."""
        db, service, mailer, consume = world
        events = [
            ev("e1", "share.transferred", masterId="m1", userId="usr_buyer", count=2),
            ev("e2", "vote.cast", sessionId="s1", masterId="m1", userId="usr_voter"),
            ev("e3", "payment.succeeded", masterId="m1", userId="usr_buyer", amount=1000, currency="usd",
               quantity=2, title="Night Drive"),
            ev("e4", "dividend.deposited", masterId="m1", amount=str(10**18)),
            ev("e5", "ipo.launched", masterId="m1"),
            ev("e6", "session.locked", sessionId="s1", masterId="m1", participantIds=["usr_other", "usr_voter"]),
        ]
        for e in events + events:
            await consume(e)
        assert sorted(await inbox(service, "usr_buyer")) == ["dividend_deposited", "ipo_live", "purchase_receipt"]
        assert await inbox(service, "usr_voter") == ["session_locked"]
        assert await inbox(service, "usr_other") == ["session_locked"]
        assert await inbox(service, "usr_art") == ["ipo_live"]
        assert await service.deliver_mail() == 6
        assert await service.deliver_mail() == 0
        receipt = next(m for m in mailer.sent if m.to == "buyer@x.io" and "receipt" in m.subject)
        assert "10.00 USD for 2 shares of “Night Drive”" in receipt.text


class TestMail:
    async def test_failures_are_retried_then_given_up(self, world):
        """A failing mailer is retried on later rounds; after five attempts the mail is failed, inbox kept."""
        db, service, mailer, consume = world
        mailer.fail = 2
        await consume(ev("p1", "payment.succeeded", userId="usr_buyer", amount=500, currency="eur"))
        assert await service.deliver_mail() == 0
        assert await service.deliver_mail() == 0
        assert await service.deliver_mail() == 1
        assert [m.to for m in mailer.sent] == ["buyer@x.io"]
        mailer.fail = 99
        await consume(ev("p2", "payment.succeeded", userId="usr_voter", amount=500, currency="eur"))
        for _ in range(7):
            await service.deliver_mail()
        assert mailer.fail == 99 - 5
        assert await inbox(service, "usr_voter") == ["purchase_receipt"]

    async def test_a_claimed_mail_is_never_sent_twice(self, world):
        """A sender that claimed a mail and died never finished it: nobody sends it again (at most once)."""
        db, service, mailer, consume = world
        await consume(ev("p1", "payment.succeeded", userId="usr_buyer", amount=500, currency="eur"))
        async with db.uow() as u:
            assert len(await u.notifications.claim_mail(10)) == 1  # then the process died
        assert await service.deliver_mail() == 0
        assert mailer.sent == []


class TestFormats:
    def test_money_and_wei(self):
        """Amounts read as people expect them."""
        assert format_money(1999, "usd") == "19.99 USD"
        assert format_money(500, "JPY") == "500 JPY"
        assert format_wei("1500000000000000000") == "1.5 ETH"
        assert format_wei(10**18) == "1 ETH"
