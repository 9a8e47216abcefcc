"""A partition's idempotency claims (``dedupe.Claims``): a claimed id answers with its offset,
claims end with their window or when the partition holds too many (oldest first), and a UUID is
remembered as its number without meeting any other id."""

from __future__ import annotations

import uuid

from delivery_agents.dedupe import Claims, claim_key

T0 = 1_800_000_000.0


def test_a_claimed_id_answers_with_the_offset_that_claimed_it() -> None:
    claims = Claims(window_s=60, max_ids=10)
    wid = str(uuid.uuid4())
    assert claims.claim(wid, 5, T0) is None
    assert claims.claim(wid, 9, T0 + 1) == 5
    assert claims.claim("not-a-uuid", 6, T0 + 1) is None
    assert claims.claim("not-a-uuid", 7, T0 + 2) == 6


def test_claims_end_with_their_window_by_the_second() -> None:
    claims = Claims(window_s=10, max_ids=100)
    claims.claim("a", 1, T0 + 0.2)
    claims.claim("b", 2, T0 + 0.9)
    claims.claim("c", 3, T0 + 5)
    assert claims.claim("a", 4, T0 + 10.5) == 1  # its second ends at T0 + 1 + 10
    assert claims.claim("a", 4, T0 + 11.0) is None  # forgotten, claimed afresh at offset 4
    assert set(claims.ids) == {"c", "a"}
    assert claims.claim("c", 8, T0 + 16.0) is None
    assert set(claims.ids) == {"a", "c"}


def test_a_full_partition_forgets_its_oldest_claims_first() -> None:
    claims = Claims(window_s=3600, max_ids=3)
    for i, wid in enumerate("abcde"):
        claims.claim(wid, i, T0 + i / 3)
    assert list(claims.ids) == ["c", "d", "e"]
    assert sum(n for _, n in claims.seconds) == 3
    claims.claim("f", 9, T0 + 3602.0)  # the window ended both seconds of the others
    assert list(claims.ids) == ["f"]


def test_a_later_claim_read_back_replaces_the_offset_in_place() -> None:
    claims = Claims(window_s=60, max_ids=10)
    claims.add("a", 1, T0)
    claims.add("b", 2, T0 + 1)
    claims.add("a", 3, T0 + 2)
    assert list(claims.ids.items()) == [("a", 3), ("b", 2)]
    assert [n for _, n in claims.seconds] == [1, 1]
    claims.clear()
    assert not claims.ids and not claims.seconds


def test_only_a_canonical_uuid_is_kept_as_a_number() -> None:
    wid = uuid.uuid4()
    assert claim_key(str(wid)) == wid.int
    for other in (str(wid).upper(), wid.hex, f"{{{wid}}}", "x" * 36):
        assert claim_key(other) == other  # never meets the canonical form's claim
