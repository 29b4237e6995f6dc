"""Random sequences of operations against a simple oracle, on both stores.

A hypothesis state machine buys days, creates, fills and deletes channels, grants and
removes days, refunds orders, lets time pass and replays keys it used before. After
every step each ledger invariant of PRODUCT.md must hold and every balance, channel and
order must be what the oracle (plain dicts) expects.

The store is async; each rule drives it with `loop.run_until_complete` on a loop the
machine owns, so hypothesis itself stays synchronous.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core.errors import ChannelNameTaken, InsufficientBalance, PaymentMismatch
from core.invariants import VerifyReport, verify
from core.model import (
    Channel,
    OrderKind,
    OrderStatus,
    PaymentOrder,
    Transfer,
    TransferKind,
    channel_account,
    partner_account,
)
from core.outcomes import OrderCredited, OrderRefunded
from core.policy import BillingPolicy
from core.ports import LedgerSnapshot, Store
from core.service import BillingService
from storage.memory import MemoryStore
from storage.postgres import PgOptions, PostgresStore
from storage.sqlite import SqliteStore
from tests.conftest import FakeClock
from tests.pg_server import PgServer

T = TypeVar("T")
DAY = timedelta(days=1)
ACTOR = "support:1"
STRIPE = "stripe:evt"
PRICE = BillingPolicy().monthly_price  # per 30 days; every partner keeps the default

WHO = st.integers(0, 1)  # which of the two partners
PICK = st.integers(0, 10_000)  # which of the candidates, modulo their number
WHOLE_BALANCE = 0  # allocate all there is (so a later refund can go below zero)
NAMES = st.sampled_from(["Shop", "shop", " SHOP ", "Blog", "News"])
DELTAS = st.one_of(
    st.integers(1, 600).map(lambda m: timedelta(minutes=m)),
    st.integers(1, 72).map(lambda h: timedelta(hours=h)),
    st.integers(1, 120).map(lambda d: timedelta(days=d)),
)


@dataclass
class ChannelModel:
    partner: int
    name: str
    until: datetime | None = None
    held: int = 0
    live: bool = True


@dataclass
class OrderModel:
    partner: int
    days: int
    amount: int
    refunded_days: int = 0


@dataclass(frozen=True)
class Replay:
    again: Callable[[], Awaitable[Any]]
    outcome: Any


Look = tuple[VerifyReport, dict[str, int], list[Transfer], list[Channel], list[PaymentOrder]]


def look(snapshot: LedgerSnapshot) -> Look:
    return (
        verify(snapshot),
        snapshot.account_balances(),
        list(snapshot.transfers()),
        snapshot.channels(),
        snapshot.orders(),
    )


def whole_days_left(until: datetime | None, now: datetime) -> int:
    if until is None or until <= now:
        return 0
    return (until - now) // DAY


def refund_due(days: int, amount: int, refunded_amount: int) -> int:
    """Days a refund of this much of the order's money takes back, half up."""
    share = Fraction(days * min(refunded_amount, amount), amount)
    return int(share + Fraction(1, 2))


class LedgerMachine(RuleBasedStateMachine):
    store_kind: ClassVar[str] = "memory"
    pg_server: ClassVar[PgServer | None] = None  # set by the PostgreSQL test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp: str | None = None
        self.pg_url: str | None = None
        self.store: Store
        if self.store_kind == "postgres":
            assert self.pg_server is not None
            self.pg_url = self.pg_server.create_database()  # a fresh database per example
            self.store = self.run(
                PostgresStore.open(self.pg_url, options=PgOptions(min_size=1, max_size=4))
            )
        elif self.store_kind == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="ledger-properties-")
            self.store = self.run(
                SqliteStore.open(Path(self.tmp) / "ledger.db", synchronous="NORMAL")
            )
        else:
            self.store = MemoryStore()
        self.clock = FakeClock()
        self.billing = BillingService(self.store, self.clock, BillingPolicy())
        self.partners = [
            self.run(self.billing.create_partner(name, ACTOR)).partner.id
            for name in ("Acme", "Beta")
        ]
        # the oracle
        self.balance = dict.fromkeys(self.partners, 0)
        self.channels: dict[int, ChannelModel] = {}
        self.orders: dict[int, OrderModel] = {}
        self.refunds: dict[tuple[int, int], OrderRefunded] = {}
        self.transfers = 0
        self.replays: list[Replay] = []
        self._serial = itertools.count(1)

    def run(self, step: Awaitable[T]) -> T:
        return self.loop.run_until_complete(step)

    def key(self, prefix: str) -> str:
        return f"{prefix}:{next(self._serial)}"

    def remember(self, outcome: Any, again: Callable[[], Awaitable[Any]]) -> None:
        self.replays.append(Replay(again, outcome))

    def live(self, pid: int | None = None) -> list[int]:
        return sorted(
            i for i, c in self.channels.items()
            if c.live and (pid is None or c.partner == pid)
        )

    def moved(self) -> tuple[dict[str, int], int]:
        """What any change of days would show in: every balance and the transfer count."""
        return self.run(self.store.verify(
            lambda s: (s.account_balances(), sum(1 for _ in s.transfers()))
        ))

    def teardown(self) -> None:
        try:
            if isinstance(self.store, SqliteStore | PostgresStore):
                self.run(self.store.close())
        finally:
            self.loop.close()
            if self.pg_url is not None and self.pg_server is not None:
                self.pg_server.drop_database(self.pg_url)
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # days in ---------------------------------------------------------------------------

    @rule(who=WHO, days=st.integers(2, 400), mismatch=st.booleans())
    def buy_days(self, who: int, days: int, mismatch: bool) -> None:
        pid = self.partners[who]
        order = self.run(self.billing.open_order(pid, OrderKind.TOPUP, days, f"user:{pid}"))
        assert order.amount == int(Fraction(days * PRICE, 30) + Fraction(1, 2))
        if mismatch:
            before = self.moved()
            with pytest.raises(PaymentMismatch):
                self.run(self.billing.credit_paid_order(order.id, order.amount + 1, "usd", STRIPE))
            assert self.moved() == before

        def pay() -> Awaitable[OrderCredited]:
            return self.billing.credit_paid_order(order.id, order.amount, "usd", STRIPE)

        credited = self.run(pay())
        self.balance[pid] += days
        self.transfers += 1
        self.orders[order.id] = OrderModel(pid, days, order.amount)
        assert credited == OrderCredited(
            pid, order.id, days, self.balance[pid], credited.transfer_id
        )
        self.remember(credited, pay)

    @rule(who=WHO, days=st.integers(-80, 200).filter(lambda d: d != 0))
    def support_grants_or_removes(self, who: int, days: int) -> None:
        pid, key = self.partners[who], self.key("credit")

        def grant() -> Awaitable[Any]:
            return self.billing.grant_days(pid, days, "property test", ACTOR, key)

        if days < 0 and -days > self.balance[pid]:
            with pytest.raises(InsufficientBalance):
                self.run(grant())
            return
        done = self.run(grant())
        self.balance[pid] += days
        self.transfers += 1
        assert done.balance == self.balance[pid]
        self.remember(done, grant)

    @precondition(lambda self: self.orders)
    @rule(pick=PICK, permille=st.integers(1, 1200))
    def stripe_refunds(self, pick: int, permille: int) -> None:
        order_id = sorted(self.orders)[pick % len(self.orders)]
        order = self.orders[order_id]
        refunded_amount = max(1, order.amount * permille // 1000)
        due = refund_due(order.days, order.amount, refunded_amount)

        def refund() -> Awaitable[OrderRefunded]:
            return self.billing.refund_order(order_id, refunded_amount, STRIPE)

        first = self.refunds.get((order_id, due))
        if first is not None:
            # The same refunded total (in days) reported again: a replay.
            before = self.moved()
            assert self.run(refund()) == replace(first, replayed=True)
            assert self.moved() == before
            return
        take = max(0, due - order.refunded_days)
        done = self.run(refund())
        if take:
            self.balance[order.partner] -= take
            order.refunded_days = due
            self.transfers += 1
        assert (done.days, done.balance, done.replayed) == (
            take, self.balance[order.partner], False
        )
        self.refunds[order_id, due] = done
        self.remember(done, refund)

    # channels ---------------------------------------------------------------------------

    @rule(who=WHO, name=NAMES)
    def create_channel(self, who: int, name: str) -> None:
        pid, key = self.partners[who], self.key("new")

        def create() -> Awaitable[Any]:
            return self.billing.create_channel(pid, name, f"user:{pid}", key)

        clean = name.strip()
        if any(self.channels[i].name.casefold() == clean.casefold() for i in self.live(pid)):
            with pytest.raises(ChannelNameTaken):
                self.run(create())
            return
        created = self.run(create())
        assert created.name == clean and created.channel_id not in self.channels
        self.channels[created.channel_id] = ChannelModel(pid, clean)
        self.remember(created, create)

    @precondition(lambda self: self.live())
    @rule(
        pick=PICK, shout=st.booleans(),
        days=st.one_of(st.integers(1, 60), st.integers(61, 3000), st.just(WHOLE_BALANCE)),
    )
    def allocate(self, pick: int, shout: bool, days: int) -> None:
        live = self.live()
        channel_id = live[pick % len(live)]
        channel = self.channels[channel_id]
        pid = channel.partner
        if days == WHOLE_BALANCE:
            days = max(self.balance[pid], 1)
        name, key = (channel.name.upper() if shout else channel.name), self.key("allocate")

        def allocate() -> Awaitable[Any]:
            return self.billing.allocate_days(pid, name, days, f"user:{pid}", key)

        if days > self.balance[pid]:
            before = self.moved()
            with pytest.raises(InsufficientBalance) as refused:
                self.run(allocate())
            assert (refused.value.needed, refused.value.available) == (days, self.balance[pid])
            assert self.moved() == before
            return
        now = self.clock.now()
        done = self.run(allocate())
        self.balance[pid] -= days
        self.transfers += 1
        channel.held += days
        channel.until = max(now, channel.until or now) + days * DAY
        assert (done.channel_id, done.balance, done.active_until) == (
            channel_id, self.balance[pid], channel.until
        )
        self.remember(done, allocate)

    @precondition(lambda self: self.live())
    @rule(pick=PICK)
    def delete_channel(self, pick: int) -> None:
        live = self.live()
        channel_id = live[pick % len(live)]
        channel, key = self.channels[channel_id], self.key("delete")
        pid = channel.partner

        def delete() -> Awaitable[Any]:
            return self.billing.delete_channel(pid, channel_id, f"user:{pid}", key)

        returned = min(whole_days_left(channel.until, self.clock.now()), channel.held)
        consumed = channel.held - returned
        done = self.run(delete())
        self.balance[pid] += returned
        self.transfers += (returned > 0) + (consumed > 0)
        channel.live, channel.held = False, 0
        assert (done.returned_days, done.consumed_days, done.balance) == (
            returned, consumed, self.balance[pid]
        )
        self.remember(done, delete)

    # time and repeats -------------------------------------------------------------------

    @rule(delta=DELTAS)
    def time_passes(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    @precondition(lambda self: self.replays)
    @rule(pick=PICK)
    def the_same_key_comes_again(self, pick: int) -> None:
        replay = self.replays[pick % len(self.replays)]
        before = self.moved()

        assert self.run(replay.again()) == replace(replay.outcome, replayed=True)
        assert self.moved() == before

    # after every step -------------------------------------------------------------------

    @invariant()
    def every_ledger_invariant_holds(self) -> None:
        report, balances, transfers, channels, orders = self.run(self.store.verify(look))
        assert report.ok, [str(v) for v in report.violations]
        assert sum(balances.values()) == 0
        keys = [t.key for t in transfers]
        assert len(set(keys)) == len(keys) == self.transfers

        derived: dict[str, int] = defaultdict(int)
        for t in transfers:
            derived[t.debit] -= t.days
            derived[t.credit] += t.days
            if t.debit.startswith("partner:") and t.kind is not TransferKind.REFUND:
                assert derived[t.debit] >= 0, f"{t.kind} overdrew {t.debit}"
        for account in set(balances) | set(derived):
            assert balances.get(account, 0) == derived.get(account, 0), account

        for pid, expected in self.balance.items():
            assert balances[partner_account(pid)] == expected

        assert {c.id for c in channels} == set(self.channels)
        for c in channels:
            model = self.channels[c.id]
            assert (c.partner_id, c.name, c.live, c.active_until) == (
                model.partner, model.name, model.live, model.until
            )
            assert balances[channel_account(c.id)] == model.held

        assert {o.id for o in orders} == set(self.orders)
        for o in orders:
            expected = self.orders[o.id].refunded_days
            assert (o.status, o.refunded_days) == (OrderStatus.PAID, expected)


class MemoryLedgerMachine(LedgerMachine):
    store_kind = "memory"


class SqliteLedgerMachine(LedgerMachine):
    store_kind = "sqlite"


class PostgresLedgerMachine(LedgerMachine):
    store_kind = "postgres"


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def test_random_operations_keep_every_ledger_invariant_in_the_memory_store() -> None:
    run_state_machine_as_test(MemoryLedgerMachine, settings=_settings(200, 50))


@pytest.mark.slow
def test_random_operations_keep_every_ledger_invariant_in_sqlite() -> None:
    run_state_machine_as_test(SqliteLedgerMachine, settings=_settings(60, 40))


@pytest.mark.slow
def test_random_operations_keep_every_ledger_invariant_in_postgresql(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresLedgerMachine, "pg_server", pg_server)
    run_state_machine_as_test(PostgresLedgerMachine, settings=_settings(30, 40))
