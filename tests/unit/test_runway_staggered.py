"""The runway (rule 7) once three or more running channels end on different dates.

Every expected instant is worked out by hand in its comment: from the moment T the
balance runs dry, the channels have drawn sum(max(0, T - end)) days, which equals the
balance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.days import runway_until

DAY = timedelta(days=1)
T0 = datetime(2030, 1, 14, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("balance", "ends", "runway"),
    [
        # Ends at days 1, 2 and 4; 10 days: (T-1) + (T-2) + (T-4) = 10, T = 17/3 days.
        (10, [1, 2, 4], T0 + 5 * DAY + timedelta(hours=16)),
        # The same channels in another order give the same instant.
        (10, [4, 1, 2], T0 + 5 * DAY + timedelta(hours=16)),
        # 2 days: (T-1) + (T-2) = 2 at T = 2.5, before the third ends.
        (2, [1, 2, 4], T0 + 2 * DAY + timedelta(hours=12)),
        # 5 days: at T = 4 the first two have drawn 3 + 2 = 5: exactly when the third ends.
        (5, [1, 2, 4], T0 + 4 * DAY),
        # Ends at 1, 3, 6 and 10; 20 days: (T-1) + (T-3) + (T-6) + (T-10) = 20, T = 10.
        (20, [1, 3, 6, 10], T0 + 10 * DAY),
        # 24 days: four drawing, 4T - 20 = 24, T = 11.
        (24, [1, 3, 6, 10], T0 + 11 * DAY),
        # 10 days: three drawing, 3T - 10 = 10, T = 20/3 = 6 days 16 hours.
        (10, [1, 3, 6, 10], T0 + 6 * DAY + timedelta(hours=16)),
    ],
)
def test_the_runway_counts_what_each_channel_draws_after_its_own_end(
    balance: int, ends: list[int], runway: datetime
) -> None:
    assert runway_until(balance, [T0 + e * DAY for e in ends], T0) == runway
