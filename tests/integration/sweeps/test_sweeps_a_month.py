"""Every sweep, hourly for a month: the ledger stays valid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core import notices, sweeps
from core.days import DAY
from tests.integration.sweeps.harness import BERLIN, Book

# ------------------------------------------------------------------------ everything, twice


async def test_a_month_of_hourly_sweeps_keeps_the_ledger_valid(book: Book) -> None:
    """Every sweep on the hour for 40 days across a month end: each channel renewed once
    per 30 days while the balance lasts, every warning once per expiry and stage."""
    book.clock.set(datetime(2030, 1, 20, 0, 0, tzinfo=UTC))
    pid = await book.partner("Acme", days=62, members=(101,), billing_day=31, threshold=20)
    await book.channel(pid, "auto", 5, auto_renew=True, granted=False)
    await book.channel(pid, "manual", 12, granted=False)
    # 45 left: one renewal (30), then 15 < 20 is low, and the next cannot be paid.
    start = book.clock.now()
    for hour in range(40 * 24):
        book.clock.set(start + timedelta(hours=hour))
        for sweep in (sweeps.sweep_alerts, sweeps.sweep_expiry, sweeps.sweep_renew):
            await sweep(book.store, book.clock)
        if hour % 24 == 6:
            await book.run_invoices(BERLIN)

    chans = await book.channels_of(pid)
    assert chans["auto"].active_until == start + 35 * DAY
    assert await book.balance(pid) == 15
    warned = await book.store.execute_raw(
        "SELECT c.name, w.stage FROM expiry_warnings w JOIN channels c ON c.id = w.channel_id"
        " ORDER BY c.name, w.active_until, w.stage DESC"
    )
    assert warned == [
        ("auto", 3), ("auto", 1), ("auto", 3), ("auto", 1), ("auto", 0),
        ("manual", 3), ("manual", 1), ("manual", 0),
    ]
    assert [n.key for n in await book.sent(notices.LOW_BALANCE)] == [f"low:{pid}:1"]
    short = await book.sent(notices.RENEW_SHORT)  # once a (UTC) day while it stays due
    assert [n.key for n in short] == [f"renew-short:{pid}:2030-02-{d}" for d in range(23, 29)]
    assert await book.invoices() == [(pid, "2030-01"), (pid, "2030-02")]
    await book.verify()
