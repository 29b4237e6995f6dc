"""core.ports.Ledger in SQL written once for SQLite and PostgreSQL (storage/sql.py).

It runs inside the transaction its store opened: on SQLite's database thread, or on a
PostgreSQL store's worker thread. Nothing here begins or ends a transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from core.ledger import GENESIS, transfer_digest
from core.model import (
    AlertState,
    ChainStart,
    Channel,
    Delivery,
    Invite,
    Member,
    NewTransfer,
    OrderKind,
    OrderStatus,
    Partner,
    PaymentOrder,
    Role,
    Transfer,
    channel_account,
    partner_account,
)
from core.names import name_key
from storage import chain, rows
from storage.rows import opt_us, to_us
from storage.sql import Row, SqlConnection
from storage.sql_inbox import SqlInbox


class SqlLedger(SqlInbox):
    def __init__(self, conn: SqlConnection, chain_key: bytes | None = None) -> None:
        self.conn = conn
        self.chain_key = chain_key  # ledger.chain_key: seals transfers (storage/chain.py)

    def _one(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, args).fetchone()
        return row

    # partners ---------------------------------------------------------------------

    def add_partner(
        self,
        name: str,
        currency: str,
        monthly_price: int,
        low_balance_days: int,
        billing_day: int,
        created_at: datetime,
    ) -> Partner:
        cur = self.conn.execute(
            "INSERT INTO partners (name, name_key, currency, monthly_price, low_balance_days,"
            " billing_day, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (name, name_key(name), currency, monthly_price, low_balance_days, billing_day,
             to_us(created_at)),
        )
        partner_id = int(cur.fetchone()[0])
        self.conn.execute(
            "INSERT INTO accounts (code, partner_id) VALUES (?, ?)",
            (partner_account(partner_id), partner_id),
        )
        return Partner(
            partner_id, name, currency, monthly_price, low_balance_days, billing_day,
            rows.from_us(to_us(created_at)),
        )

    def get_partner(self, partner_id: int) -> Partner | None:
        row = self._one(f"SELECT {rows.PARTNER_COLS} FROM partners WHERE id = ?", (partner_id,))
        return None if row is None else rows.partner(row)

    def find_partner_by_name(self, name: str) -> Partner | None:
        row = self._one(
            f"SELECT {rows.PARTNER_COLS} FROM partners WHERE name_key = ?", (name_key(name),)
        )
        return None if row is None else rows.partner(row)

    def list_partners(self) -> list[Partner]:
        cur = self.conn.execute(f"SELECT {rows.PARTNER_COLS} FROM partners ORDER BY id")
        return [rows.partner(r) for r in cur]

    def update_partner(self, partner: Partner) -> None:
        self.conn.execute(
            "UPDATE partners SET name = ?, name_key = ?, currency = ?, monthly_price = ?,"
            " low_balance_days = ?, billing_day = ? WHERE id = ?",
            (partner.name, name_key(partner.name), partner.currency, partner.monthly_price,
             partner.low_balance_days, partner.billing_day, partner.id),
        )

    # members and invites ----------------------------------------------------------

    def save_member(self, member: Member) -> None:
        self.conn.execute(
            "INSERT INTO members (user_id, partner_id, role, linked_at, unreachable)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
            " partner_id = excluded.partner_id, role = excluded.role,"
            " linked_at = excluded.linked_at, unreachable = excluded.unreachable",
            (member.user_id, member.partner_id, member.role.value, to_us(member.linked_at),
             int(member.unreachable)),
        )

    def get_member(self, user_id: int) -> Member | None:
        row = self._one(f"SELECT {rows.MEMBER_COLS} FROM members WHERE user_id = ?", (user_id,))
        return None if row is None else rows.member(row)

    def list_members(self, partner_id: int) -> list[Member]:
        cur = self.conn.execute(
            f"SELECT {rows.MEMBER_COLS} FROM members WHERE partner_id = ?"
            " ORDER BY linked_at, user_id",
            (partner_id,),
        )
        return [rows.member(r) for r in cur]

    def add_invite(
        self,
        partner_id: int,
        role: Role,
        code_hash: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> Invite:
        row = self._one(
            "INSERT INTO invites (partner_id, role, code_hash, created_at, expires_at,"
            f" created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING {rows.INVITE_COLS}",
            (partner_id, role.value, code_hash, to_us(created_at), to_us(expires_at), created_by),
        )
        assert row is not None
        return rows.invite(row)

    def find_invite(self, code_hash: str) -> Invite | None:
        row = self._one(
            f"SELECT {rows.INVITE_COLS} FROM invites WHERE code_hash = ?", (code_hash,)
        )
        return None if row is None else rows.invite(row)

    def use_invite(self, invite_id: int, user_id: int, at: datetime) -> None:
        self.conn.execute(
            "UPDATE invites SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL",
            (to_us(at), user_id, invite_id),
        )

    # channels ---------------------------------------------------------------------

    def add_channel(self, partner_id: int, name: str, created_at: datetime) -> Channel:
        cur = self.conn.execute(
            "INSERT INTO channels (partner_id, name, name_key, created_at) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (partner_id, name, name_key(name), to_us(created_at)),
        )
        channel_id = int(cur.fetchone()[0])
        self.conn.execute(
            "INSERT INTO accounts (code, partner_id, channel_id) VALUES (?, ?, ?)",
            (channel_account(channel_id), partner_id, channel_id),
        )
        return Channel(channel_id, partner_id, name, rows.from_us(to_us(created_at)))

    def get_channel(self, channel_id: int) -> Channel | None:
        row = self._one(f"SELECT {rows.CHANNEL_COLS} FROM channels WHERE id = ?", (channel_id,))
        return None if row is None else rows.channel(row)

    def find_live_channel(self, partner_id: int, name: str) -> Channel | None:
        row = self._one(
            f"SELECT {rows.CHANNEL_COLS} FROM channels"
            " WHERE partner_id = ? AND name_key = ? AND deleted_at IS NULL",
            (partner_id, name_key(name)),
        )
        return None if row is None else rows.channel(row)

    def list_channels(self, partner_id: int, *, include_deleted: bool = False) -> list[Channel]:
        live = "" if include_deleted else " AND deleted_at IS NULL"
        cur = self.conn.execute(
            f"SELECT {rows.CHANNEL_COLS} FROM channels WHERE partner_id = ?{live} ORDER BY id",
            (partner_id,),
        )
        return [rows.channel(r) for r in cur]

    def update_channel(self, channel: Channel) -> None:
        self.conn.execute(
            "UPDATE channels SET name = ?, name_key = ?, active_until = ?, auto_renew = ?,"
            " deleted_at = ?, billing = ?, subscription_ref = ? WHERE id = ?",
            (channel.name, name_key(channel.name), opt_us(channel.active_until),
             int(channel.auto_renew), opt_us(channel.deleted_at), channel.billing.value,
             channel.subscription_ref, channel.id),
        )

    # accounts and transfers -------------------------------------------------------

    def balance(self, account: str) -> int:
        row = self._one("SELECT balance FROM accounts WHERE code = ?", (account,))
        return 0 if row is None else int(row[0])

    def add_transfer(self, transfer: NewTransfer) -> Transfer:
        last = self._one("SELECT id, digest FROM transfers ORDER BY id DESC LIMIT 1")
        transfer_id, previous = (1, GENESIS) if last is None else (last[0] + 1, last[1])
        key = chain.key_for(self.conn, transfer_id, self.chain_key)
        digest = transfer_digest(previous, transfer_id, transfer, key)
        t = transfer
        # Balances move in the AFTER INSERT trigger; the overdraft trigger backs the
        # use case's own check.
        self.conn.execute(
            f"INSERT INTO transfers ({rows.TRANSFER_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (transfer_id, t.key, t.debit, t.credit, t.days, t.kind.value, t.actor, t.reason,
             to_us(t.created_at), t.order_id, digest),
        )
        return Transfer(
            transfer_id, t.key, t.debit, t.credit, t.days, t.kind, t.actor, t.reason,
            t.created_at, t.order_id, digest,
        )

    def find_transfer(self, key: str) -> Transfer | None:
        row = self._one(f"SELECT {rows.TRANSFER_COLS} FROM transfers WHERE key = ?", (key,))
        return None if row is None else rows.transfer(row)

    def list_transfers(
        self, account: str, *, limit: int, before_id: int | None = None
    ) -> list[Transfer]:
        before = (1 << 62) if before_id is None else before_id
        # Two index range scans merged, rather than an OR that scans the table. UNION ALL:
        # no row is in both (CHECK debit <> credit), so there is nothing to deduplicate.
        cur = self.conn.execute(
            f"SELECT {rows.TRANSFER_COLS} FROM ("
            f" SELECT * FROM (SELECT * FROM transfers WHERE debit = ? AND id < ?"
            "  ORDER BY id DESC LIMIT ?) AS d"
            " UNION ALL"
            f" SELECT * FROM (SELECT * FROM transfers WHERE credit = ? AND id < ?"
            "  ORDER BY id DESC LIMIT ?) AS c"
            ") AS t ORDER BY id DESC LIMIT ?",
            (account, before, limit, account, before, limit, limit),
        )
        return [rows.transfer(r) for r in cur]

    # audit and outcomes -----------------------------------------------------------

    def record_event(
        self, at: datetime, actor: str, action: str, partner_id: int | None, detail: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (at, actor, action, partner_id, detail) VALUES (?, ?, ?, ?, ?)",
            (to_us(at), actor, action, partner_id, detail),
        )

    def find_outcome(self, key: str) -> tuple[str, str] | None:
        row = self._one("SELECT kind, outcome FROM operations WHERE key = ?", (key,))
        return None if row is None else (row[0], row[1])

    def save_outcome(self, key: str, kind: str, payload: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO operations (key, kind, outcome, created_at) VALUES (?, ?, ?, ?)",
            (key, kind, payload, to_us(at)),
        )

    # payment orders ---------------------------------------------------------------

    def add_order(
        self,
        partner_id: int,
        kind: OrderKind,
        days: int,
        amount: int,
        currency: str,
        created_at: datetime,
        created_by: str,
        *,
        period: str | None = None,
        channels: int | None = None,
        channel_id: int | None = None,
    ) -> PaymentOrder:
        row = self._one(
            "INSERT INTO orders (partner_id, kind, days, amount, currency, status, created_at,"
            " created_by, period, channels, channel_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            f" RETURNING {rows.ORDER_COLS}",
            (partner_id, kind.value, days, amount, currency, OrderStatus.OPEN.value,
             to_us(created_at), created_by, period, channels, channel_id),
        )
        assert row is not None
        return rows.order(row)

    def get_order(self, order_id: int) -> PaymentOrder | None:
        row = self._one(f"SELECT {rows.ORDER_COLS} FROM orders WHERE id = ?", (order_id,))
        return None if row is None else rows.order(row)

    def find_invoice(self, partner_id: int, period: str) -> PaymentOrder | None:
        row = self._one(
            f"SELECT {rows.ORDER_COLS} FROM orders WHERE partner_id = ? AND period = ?",
            (partner_id, period),
        )
        return None if row is None else rows.order(row)

    def list_orders(
        self, partner_id: int | None = None, *, statuses: Sequence[OrderStatus] = ()
    ) -> list[PaymentOrder]:
        where: list[str] = []
        args: list[object] = []
        if partner_id is not None:
            where.append("partner_id = ?")
            args.append(partner_id)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(s.value for s in statuses)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        cur = self.conn.execute(
            f"SELECT {rows.ORDER_COLS} FROM orders{clause} ORDER BY id DESC", args
        )
        return [rows.order(r) for r in cur]

    def update_order(self, order: PaymentOrder) -> None:
        self.conn.execute(
            "UPDATE orders SET status = ?, provider_ref = ?, payment_ref = ?, url = ?,"
            " paid_at = ?, closed_at = ?, refunded_days = ? WHERE id = ?",
            (order.status.value, order.provider_ref, order.payment_ref, order.url,
             opt_us(order.paid_at), opt_us(order.closed_at), order.refunded_days, order.id),
        )


    def find_order_by_ref(self, provider_ref: str) -> PaymentOrder | None:
        row = self._one(
            f"SELECT {rows.ORDER_COLS} FROM orders WHERE provider_ref = ?", (provider_ref,)
        )
        return None if row is None else rows.order(row)

    def find_order_by_payment(self, payment_ref: str) -> PaymentOrder | None:
        row = self._one(
            f"SELECT {rows.ORDER_COLS} FROM orders WHERE payment_ref = ?", (payment_ref,)
        )
        return None if row is None else rows.order(row)

    def find_channel_by_subscription(self, subscription_ref: str) -> Channel | None:
        row = self._one(
            f"SELECT {rows.CHANNEL_COLS} FROM channels WHERE subscription_ref = ?",
            (subscription_ref,),
        )
        return None if row is None else rows.channel(row)

    # scheduler sweeps -------------------------------------------------------------

    def alert_state(self, partner_id: int) -> AlertState:
        row = self._one(ALERT_STATE_SQL, (partner_id,))
        if row is None:
            raise LookupError(partner_id)
        return _alert(row)

    def alert_candidates(self) -> list[AlertState]:
        # One pass over partners: those under the threshold not yet told, and those told
        # whose balance has come back up (to re-arm the alert).
        cur = self.conn.execute(
            f"SELECT {_ALERT_COLS} FROM partners p"
            " JOIN accounts a ON a.code = 'partner:' || p.id"
            " LEFT JOIN alert_state s ON s.partner_id = p.id"
            " WHERE (CASE WHEN a.balance < p.low_balance_days THEN 1 ELSE 0 END)"
            " <> coalesce(s.below, 0)"
        )
        return [_alert(r) for r in cur]

    def set_alert_state(self, partner_id: int, below: bool, crossings: int, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO alert_state (partner_id, below, crossings, changed_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (partner_id) DO UPDATE SET"
            " below = excluded.below, crossings = excluded.crossings,"
            " changed_at = excluded.changed_at",
            (partner_id, int(below), crossings, to_us(at)),
        )

    def running_until(
        self, partner_ids: Sequence[int], now: datetime
    ) -> dict[int, list[datetime]]:
        found: dict[int, list[datetime]] = {p: [] for p in partner_ids}
        if not partner_ids:
            return found
        # The partner ids go in as one parameter: one statement however many there are.
        dialect = self.conn.dialect
        cur = self.conn.execute(
            "SELECT partner_id, active_until FROM channels"
            " WHERE deleted_at IS NULL AND active_until > ?"
            f" AND {dialect.member_of('partner_id')}",
            (to_us(now), dialect.id_list(partner_ids)),
        )
        for partner_id, until in cur:
            found[partner_id].append(rows.from_us(until))
        return found

    def channels_expiring(self, after: datetime, until: datetime) -> list[Channel]:
        cur = self.conn.execute(
            f"SELECT {rows.CHANNEL_COLS} FROM channels WHERE deleted_at IS NULL"
            " AND active_until > ? AND active_until <= ? ORDER BY partner_id, active_until",
            (to_us(after), to_us(until)),
        )
        return [rows.channel(r) for r in cur]

    def record_expiry_warnings(
        self, warnings: Sequence[tuple[int, datetime, int]], at: datetime
    ) -> list[tuple[int, datetime, int]]:
        new = []
        sent = to_us(at)
        for channel_id, until, stage in warnings:
            cur = self.conn.execute(
                "INSERT INTO expiry_warnings (channel_id, active_until, stage, sent_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (channel_id, to_us(until), stage, sent),
            )
            if cur.rowcount == 1:
                new.append((channel_id, until, stage))
        return new

    def channels_to_renew(self, until: datetime) -> list[Channel]:
        cur = self.conn.execute(
            f"SELECT {rows.CHANNEL_COLS} FROM channels WHERE deleted_at IS NULL"
            " AND auto_renew = 1 AND billing = 'balance' AND active_until <= ?"
            " ORDER BY partner_id, active_until",
            (to_us(until),),
        )
        return [rows.channel(r) for r in cur]

    def invoices_to_remind(self, created_before: datetime) -> list[PaymentOrder]:
        cur = self.conn.execute(
            f"SELECT {rows.ORDER_COLS} FROM orders WHERE status = 'open' AND kind = 'invoice'"
            " AND reminded_at IS NULL AND created_at <= ? ORDER BY id",
            (to_us(created_before),),
        )
        return [rows.order(r) for r in cur]

    def invoices_to_flag_overdue(self, created_before: datetime) -> list[PaymentOrder]:
        cur = self.conn.execute(
            f"SELECT {rows.ORDER_COLS} FROM orders WHERE status = 'open' AND kind = 'invoice'"
            " AND overdue_at IS NULL AND created_at <= ? ORDER BY id",
            (to_us(created_before),),
        )
        return [rows.order(r) for r in cur]

    def mark_invoices(self, order_ids: Sequence[int], field: str, at: datetime) -> None:
        column = {"reminded_at": "reminded_at", "overdue_at": "overdue_at"}[field]
        self.conn.executemany(
            f"UPDATE orders SET {column} = ? WHERE id = ?",
            [(to_us(at), order_id) for order_id in order_ids],
        )

    def start_job_run(self, job: str, at: datetime) -> int:
        cur = self.conn.execute(
            "INSERT INTO job_runs (job, started_at) VALUES (?, ?) RETURNING id", (job, to_us(at))
        )
        return int(cur.fetchone()[0])

    def finish_job_run(self, run_id: int, at: datetime, ok: bool, summary: str) -> None:
        self.conn.execute(
            "UPDATE job_runs SET finished_at = ?, ok = ?, summary = ? WHERE id = ?",
            (to_us(at), int(ok), summary, run_id),
        )

    # provider events and notices --------------------------------------------------

    def find_provider_event(self, event_id: str) -> str | None:
        row = self._one("SELECT result FROM stripe_events WHERE id = ?", (event_id,))
        return None if row is None else str(row[0])

    def record_provider_event(
        self, event_id: str, event_type: str, at: datetime, result: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO stripe_events (id, type, received_at, result) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (event_id, event_type, to_us(at), result),
        )

    def add_notice(
        self, key: str, partner_id: int | None, kind: str, payload: str, at: datetime
    ) -> bool:
        cur = self.conn.execute(
            "INSERT INTO notices (key, partner_id, kind, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, partner_id, kind, payload, to_us(at)),
        )
        return cur.rowcount == 1

    def expand_notices(self, support_ids: Sequence[int], at: datetime) -> int:
        due = to_us(at)
        # Set-based: every new notice to every reachable member of its partner at once.
        added = self.conn.execute(
            "INSERT INTO deliveries (notice_id, user_id, due_at)"
            " SELECT n.id, m.user_id, ? FROM notices n JOIN members m"
            "  ON m.partner_id = n.partner_id AND m.unreachable = 0"
            " WHERE n.expanded = 0 ON CONFLICT DO NOTHING",
            (due,),
        ).rowcount
        for user_id in support_ids:
            added += self.conn.execute(
                "INSERT INTO deliveries (notice_id, user_id, due_at)"
                " SELECT id, ?, ? FROM notices WHERE expanded = 0 AND partner_id IS NULL"
                " ON CONFLICT DO NOTHING",
                (user_id, due),
            ).rowcount
        self.conn.execute("UPDATE notices SET expanded = 1 WHERE expanded = 0")
        return int(added)

    def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        cur = self.conn.execute(
            f"SELECT d.id, d.user_id, d.attempts, {rows.NOTICE_COLS}"
            " FROM deliveries d JOIN notices n ON n.id = d.notice_id"
            " WHERE d.status = 'pending' AND d.due_at <= ? ORDER BY d.due_at, d.id LIMIT ?",
            (to_us(now), limit),
        )
        return [rows.delivery(r) for r in cur]

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        sent: bool,
        at: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        if sent:
            self.conn.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                (to_us(at), delivery_id),
            )
            return
        status = "pending" if retry_at is not None else "failed"
        self.conn.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
            " due_at = coalesce(?, due_at) WHERE id = ?",
            (status, error, opt_us(retry_at), delivery_id),
        )

    # leadership ---------------------------------------------------------------------

    def begin_leadership(self, at: datetime) -> int:
        row = self._one(
            "UPDATE leadership SET epoch = epoch + 1, since = ? WHERE id = 1 RETURNING epoch",
            (to_us(at),),
        )
        assert row is not None  # the row is made by migration 0010
        return int(row[0])

    def claim_deliveries(
        self, epoch: int | None, support_ids: Sequence[int], now: datetime, limit: int
    ) -> list[Delivery] | None:
        if epoch is not None:
            row = self._one("SELECT epoch FROM leadership WHERE id = 1")
            if row is None or int(row[0]) != epoch:
                return None
        self.expand_notices(support_ids, now)
        return self.due_deliveries(now, limit) if limit > 0 else []


_ALERT_COLS = (
    "p.id, p.name, p.currency, p.monthly_price, p.low_balance_days, p.billing_day,"
    " p.created_at, a.balance, coalesce(s.below, 0), coalesce(s.crossings, 0)"
)


ALERT_STATE_SQL = (
    f"SELECT {_ALERT_COLS} FROM partners p"
    " JOIN accounts a ON a.code = 'partner:' || p.id"
    " LEFT JOIN alert_state s ON s.partner_id = p.id WHERE p.id = ?"
)


def _alert(r: Row) -> AlertState:
    return AlertState(rows.partner(r[:7]), r[7], bool(r[8]), r[9])


class SqlSnapshot:
    """core.ports.LedgerSnapshot inside one read transaction."""

    def __init__(self, conn: SqlConnection) -> None:
        self.conn = conn

    def transfers(self) -> Iterator[Transfer]:
        cur = self.conn.stream(f"SELECT {rows.TRANSFER_COLS} FROM transfers ORDER BY id")
        while batch := cur.fetchmany(5000):
            yield from (rows.transfer(r) for r in batch)

    def account_balances(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT code, balance FROM accounts")}

    def channels(self) -> list[Channel]:
        cur = self.conn.execute(f"SELECT {rows.CHANNEL_COLS} FROM channels ORDER BY id")
        return [rows.channel(r) for r in cur]

    def orders(self) -> list[PaymentOrder]:
        cur = self.conn.execute(f"SELECT {rows.ORDER_COLS} FROM orders ORDER BY id")
        return [rows.order(r) for r in cur]

    def partners(self) -> list[Partner]:
        cur = self.conn.execute(f"SELECT {rows.PARTNER_COLS} FROM partners ORDER BY id")
        return [rows.partner(r) for r in cur]

    def chain_start(self) -> ChainStart | None:
        return chain.read_start(self.conn)

    def outcomes(self) -> Iterator[tuple[str, str, str]]:
        cur = self.conn.stream("SELECT key, kind, outcome FROM operations")
        while batch := cur.fetchmany(5000):
            yield from ((r[0], r[1], r[2]) for r in batch)
