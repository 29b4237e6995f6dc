"""Store contract: partners, their members and invites."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core.errors import (
    AlreadyLinked,
    InviteInvalid,
    PartnerNameTaken,
    PartnerNotFound,
    StorageError,
)
from core.model import Member, Role, partner_account
from core.partners import hash_code
from core.ports import Store
from core.service import BillingService
from tests.conftest import START, FakeClock
from tests.contract.store.helpers import DAY, SUPPORT, balance, new_partner, raw_partner

# partners ---------------------------------------------------------------------------


async def test_a_new_partner_starts_at_zero_days_with_an_owner_invite(
    billing: BillingService, store: Store
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)

    assert created.partner.name == "Acme"
    assert (created.partner.currency, created.partner.monthly_price) == ("usd", 1000)
    assert await balance(store, partner_account(created.partner.id)) == 0
    invite = await store.read(lambda lg: lg.find_invite(hash_code(created.invite_code)))
    assert invite is not None
    assert (invite.partner_id, invite.role, invite.used_at) == (
        created.partner.id, Role.OWNER, None
    )
    assert created.invite_expires_at == START + timedelta(hours=72)


async def test_partner_names_are_unique_whatever_their_case(billing: BillingService) -> None:
    await billing.create_partner("Acme", SUPPORT)

    with pytest.raises(PartnerNameTaken):
        await billing.create_partner("  ACME ", SUPPORT)
    assert [p.name for p, _, _ in await billing.list_partners()] == ["Acme"]


async def test_the_store_itself_refuses_a_second_partner_of_the_same_name(store: Store) -> None:
    await store.write(lambda lg: raw_partner(lg, "Acme"))

    with pytest.raises(StorageError):
        await store.write(lambda lg: raw_partner(lg, "aCME"))
    assert [p.name for p in await store.read(lambda lg: lg.list_partners())] == ["Acme"]


async def test_partners_are_found_by_id_or_by_name_in_any_case(
    billing: BillingService, store: Store
) -> None:
    acme = await new_partner(billing, "Acme")
    beta = await new_partner(billing, "Beta")

    assert (await billing.resolve_partner("acme")).id == acme
    assert (await billing.resolve_partner(str(beta))).id == beta
    with pytest.raises(PartnerNotFound):
        await billing.resolve_partner("Gamma")
    assert await store.read(lambda lg: lg.get_partner(999)) is None
    assert [p.id for p in await store.read(lambda lg: lg.list_partners())] == [acme, beta]


async def test_a_changed_partner_reads_back_as_it_was_written(billing: BillingService) -> None:
    pid = await new_partner(billing)

    await billing.set_price(pid, 1250, SUPPORT)
    await billing.set_alert_threshold(pid, 7, SUPPORT)

    partner = await billing.partner(pid)
    assert (partner.monthly_price, partner.low_balance_days) == (1250, 7)


# members and invites ----------------------------------------------------------------


async def test_saving_a_member_again_replaces_the_first_row(store: Store) -> None:
    pid = await store.write(raw_partner)
    first = Member(7, pid, Role.MEMBER, START)
    second = replace(first, role=Role.OWNER, unreachable=True)

    await store.write(lambda lg: lg.save_member(first))
    await store.write(lambda lg: lg.save_member(second))

    assert await store.read(lambda lg: lg.get_member(7)) == second
    assert await store.read(lambda lg: lg.list_members(pid)) == [second]
    assert await store.read(lambda lg: lg.get_member(8)) is None


async def test_members_are_listed_in_the_order_they_linked(store: Store) -> None:
    pid = await store.write(raw_partner)
    late = Member(9, pid, Role.MEMBER, START + timedelta(hours=1))
    early = Member(8, pid, Role.OWNER, START)

    await store.write(lambda lg: lg.save_member(late))
    await store.write(lambda lg: lg.save_member(early))

    assert await store.read(lambda lg: lg.list_members(pid)) == [early, late]


async def test_a_member_of_a_missing_partner_is_refused(store: Store) -> None:
    with pytest.raises(StorageError):
        await store.write(lambda lg: lg.save_member(Member(7, 999, Role.MEMBER, START)))


async def test_an_unreachable_member_can_be_marked_reachable_again(
    billing: BillingService,
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    await billing.redeem_invite(created.invite_code, 100)

    await billing.set_member_reachable(100, False, "system:bot")
    assert (await billing.member(100)) is not None
    assert (await billing.member(100)).unreachable  # type: ignore[union-attr]
    await billing.set_member_reachable(100, True, "system:bot")
    assert not (await billing.member(100)).unreachable  # type: ignore[union-attr]


async def test_an_invite_links_its_first_user_as_the_partners_owner(
    billing: BillingService,
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)

    member = await billing.redeem_invite(created.invite_code, 100)

    assert (member.partner_id, member.role, member.linked_at) == (
        created.partner.id, Role.OWNER, START
    )
    assert await billing.member(100) == member


async def test_an_invite_works_only_once(billing: BillingService) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    await billing.redeem_invite(created.invite_code, 100)

    with pytest.raises(InviteInvalid) as refused:
        await billing.redeem_invite(created.invite_code, 101)
    assert refused.value.reason == "used"
    assert await billing.member(101) is None


async def test_the_same_user_redeeming_the_same_invite_twice_gets_the_same_link(
    billing: BillingService, clock: FakeClock
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    first = await billing.redeem_invite(created.invite_code, 100)
    clock.advance(timedelta(minutes=1))

    assert await billing.redeem_invite(created.invite_code, 100) == first


async def test_an_invite_expires_when_its_time_to_live_is_over(
    billing: BillingService, clock: FakeClock
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    clock.set(created.invite_expires_at)

    with pytest.raises(InviteInvalid) as refused:
        await billing.redeem_invite(created.invite_code, 100)
    assert refused.value.reason == "expired"
    assert await billing.member(100) is None


async def test_an_invite_still_works_a_moment_before_it_expires(
    billing: BillingService, clock: FakeClock
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    clock.set(created.invite_expires_at - timedelta(microseconds=1))

    assert (await billing.redeem_invite(created.invite_code, 100)).partner_id == created.partner.id


async def test_an_unknown_invite_code_is_refused(billing: BillingService) -> None:
    await billing.create_partner("Acme", SUPPORT)

    with pytest.raises(InviteInvalid) as refused:
        await billing.redeem_invite("no-such-code", 100)
    assert refused.value.reason == "unknown"


async def test_a_teammate_invite_links_a_member_not_an_owner(billing: BillingService) -> None:
    created = await billing.create_partner("Acme", SUPPORT)
    await billing.redeem_invite(created.invite_code, 100)
    invite = await billing.create_invite(created.partner.id, "user:100")

    member = await billing.redeem_invite(invite.code, 101)

    assert (member.partner_id, member.role) == (created.partner.id, Role.MEMBER)


async def test_a_user_linked_to_one_partner_cannot_join_another(billing: BillingService) -> None:
    acme = await billing.create_partner("Acme", SUPPORT)
    beta = await billing.create_partner("Beta", SUPPORT)
    await billing.redeem_invite(acme.invite_code, 100)

    with pytest.raises(AlreadyLinked) as refused:
        await billing.redeem_invite(beta.invite_code, 100)
    assert refused.value.partner_id == acme.partner.id


async def test_only_the_hash_of_an_invite_code_is_stored(
    billing: BillingService, store: Store
) -> None:
    created = await billing.create_partner("Acme", SUPPORT)

    invite = await store.read(lambda lg: lg.find_invite(hash_code(created.invite_code)))
    assert invite is not None and invite.code_hash != created.invite_code
    assert await store.read(lambda lg: lg.find_invite(created.invite_code)) is None


async def test_an_invite_is_used_once_even_when_marked_twice(store: Store) -> None:
    pid = await store.write(raw_partner)
    invite = await store.write(
        lambda lg: lg.add_invite(pid, Role.MEMBER, "a" * 64, START, START + DAY, SUPPORT)
    )

    await store.write(lambda lg: lg.use_invite(invite.id, 100, START))
    await store.write(lambda lg: lg.use_invite(invite.id, 101, START + timedelta(hours=1)))

    used = await store.read(lambda lg: lg.find_invite("a" * 64))
    assert used is not None
    assert (used.used_by, used.used_at) == (100, START)
