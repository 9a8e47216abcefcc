"""The subscription table's indexes (webhookmaster/subscription_index.py) against a brute-force
scan: fan-out matching and keyset pages over random create/update/delete sequences, applied in
order, out of order and from several threads at once; and the compact in-memory form."""

from __future__ import annotations

import random
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhookmaster import secret_box
from webhookmaster.secret_box import SecretBox
from webhookmaster.settings import Settings
from webhookmaster.subscription_index import SMALL
from webhookmaster.subscription_table import (
    Protection,
    Subscription,
    SubscriptionTable,
    entry_key,
    entry_offset,
    pack,
    unpack,
)

KEY = secret_box.new_key()
BOX = SecretBox([KEY])
IDS = [str(uuid.UUID(int=n)) for n in range(1, 9)]
TYPES = ["a", "b", "c"]
PROBES = [*TYPES, "unnamed"]
TIMES = [f"2026-11-29T00:00:0{n}.000000Z" for n in range(4)]

# A write: (id index, None for a delete or (event types, is_active, created_at index)).
Write = tuple[int, tuple[tuple[str, ...], bool, int] | None]
writes = st.tuples(
    st.integers(0, len(IDS) - 1),
    st.none()
    | st.tuples(
        st.lists(st.sampled_from(TYPES), max_size=2, unique=True).map(tuple),
        st.booleans(),
        st.integers(0, len(TIMES) - 1),
    ),
)


@contextmanager
def table() -> Iterator[SubscriptionTable]:
    # never started: nothing connects; apply() is what the follower and the API writers call
    t = SubscriptionTable(Settings(kafka_bootstrap="127.0.0.1:9"), BOX)
    try:
        yield t
    finally:
        t.close()


def _sub(index: int, fields: tuple[tuple[str, ...], bool, int]) -> Subscription:
    event_types, active, created = fields
    return Subscription(
        IDS[index], f"https://example.com/{index}", f"whsec_{index}", event_types, active,
        TIMES[created], TIMES[-1],
    )  # fmt: skip


def _model(ops: list[tuple[int, Write]]) -> dict[str, Subscription]:
    """Brute force: per id, the write with the highest offset wins; deletes remove."""
    latest: dict[str, tuple[int, Subscription | None]] = {}
    for offset, (index, fields) in ops:
        if IDS[index] not in latest or latest[IDS[index]][0] < offset:
            latest[IDS[index]] = (offset, None if fields is None else _sub(index, fields))
    return {k: s for k, (_, s) in latest.items() if s is not None}


def _apply(t: SubscriptionTable, offset: int, write: Write) -> None:
    index, fields = write
    t.apply(IDS[index], None if fields is None else _sub(index, fields), offset)


def _check(t: SubscriptionTable, model: dict[str, Subscription]) -> None:
    order = sorted(model.values(), key=lambda s: (s.created_at, s.id))
    for probe in PROBES:
        expected = [s.id for s in order if s.is_active and s.accepts(probe)]
        assert [s.id for s in t.matching(probe)] == expected, probe
    assert len(t) == len(model)
    for limit in (1, 2, 3, 50):
        seen, after = [], None
        while True:
            page, more = t.page(after, limit)
            assert len(page) <= limit
            seen += page
            if not more:
                break
            after = (page[-1].created_at, page[-1].id)
        assert [s.id for s in seen] == [s.id for s in order]
    for s in order:
        got = t.get(s.id)
        assert got is not None and got.to_record() == s.to_record()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(writes, max_size=40), st.randoms(use_true_random=False))
def test_index_matches_a_scan_whatever_the_order_of_records(
    ops: list[Write], rnd: random.Random
) -> None:
    numbered = list(enumerate(ops, 1))
    shuffled = numbered[:]
    rnd.shuffle(shuffled)  # late records of older offsets must not win
    with table() as in_order, table() as out_of_order:
        for offset, write in numbered:
            _apply(in_order, offset, write)
            _check(in_order, _model(numbered[:offset]))
        for offset, write in shuffled:
            _apply(out_of_order, offset, write)
        _check(out_of_order, _model(numbered))


def test_index_is_right_after_concurrent_writers_and_readers() -> None:
    rnd = random.Random(13)
    numbered = [
        (offset, (rnd.randrange(len(IDS)), _random_fields(rnd))) for offset in range(1, 4001)
    ]
    stop = threading.Event()
    problems: list[str] = []

    def read(t: SubscriptionTable) -> None:
        while not stop.is_set():
            for probe in PROBES:
                for s in t.matching(probe):
                    if not (s.is_active and s.accepts(probe)):
                        problems.append(f"{s.id} matched {probe}")
            page, _ = t.page(None, 50)
            keys = [(s.created_at, s.id) for s in page]
            if keys != sorted(set(keys)):
                problems.append(f"page out of order: {keys}")

    with table() as t:
        writers = [
            threading.Thread(target=lambda part=part: [_apply(t, o, w) for o, w in part])
            for part in (numbered[k::4] for k in range(4))
        ]
        readers = [threading.Thread(target=read, args=(t,)) for _ in range(2)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        stop.set()
        for thread in readers:
            thread.join(60)
        assert problems == []
        _check(t, _model(numbered))


def _random_fields(rnd: random.Random) -> tuple[tuple[str, ...], bool, int] | None:
    if rnd.random() < 0.25:
        return None
    types = tuple(rnd.sample(TYPES, rnd.randrange(3)))
    return types, rnd.random() < 0.8, rnd.randrange(len(TIMES))


def test_pages_see_every_lasting_subscription_once_under_concurrent_writes() -> None:
    rnd = random.Random(7)
    lasting = [_new(rnd) for _ in range(300)]
    offset = 0
    with table() as t:
        for sub in lasting:
            offset += 1
            t.apply(sub.id, sub, offset)
        passing: list[Subscription] = []
        seen: list[str] = []
        after = None
        while True:
            page, more = t.page(after, 7)
            seen += [s.id for s in page]
            # between pages: creates before and after the cursor, deletes and updates
            for _ in range(5):
                offset += 1
                sub = _new(rnd)
                passing.append(sub)
                t.apply(sub.id, sub, offset)
            for victim in rnd.sample(passing, min(2, len(passing))):
                offset += 1
                t.apply(victim.id, None, offset)
                passing.remove(victim)
            for keep in rnd.sample(lasting, 3):
                offset += 1
                t.apply(keep.id, Subscription(**{**_fields(keep), "is_active": False}), offset)
            if not more:
                break
            after = (page[-1].created_at, page[-1].id)
    assert len(seen) == len(set(seen))
    assert {s.id for s in lasting} <= set(seen)


def _new(rnd: random.Random) -> Subscription:
    created = f"2026-11-29T00:00:{rnd.randrange(60):02d}.{rnd.randrange(10**6):06d}Z"
    return Subscription(
        str(uuid.UUID(int=rnd.getrandbits(128))), "https://example.com/", "whsec_x", ("a",),
        True, created, created,
    )  # fmt: skip


def _fields(sub: Subscription) -> dict[str, object]:
    return {f: getattr(sub, f) for f in Subscription.__struct_fields__}


def test_the_table_keeps_secrets_sealed_and_shares_what_it_can() -> None:
    with table() as t:
        a = Subscription(IDS[0], "https://example.com/", "whsec_a", ("x", "y"), True, *TIMES[:2])
        b = Subscription(
            IDS[1], "https://example.com/", "whsec_b", ("x", "y"), True, *TIMES[:1] * 2
        )
        t.apply(a.id, a, 1)
        t.apply(b.id, b, 2)
        kept_a, kept_b = t.get(a.id), t.get(b.id)
        assert kept_a is not None and kept_b is not None
        assert isinstance(kept_a.secret, bytes) and b"whsec_a" not in kept_a.secret
        assert "whsec_a" not in repr(kept_a) and "whsec_a" not in repr(kept_a.secret)
        assert "whsec_a" not in repr(a)
        assert kept_a.secret_key == "whsec_a" and kept_b.secret_key == "whsec_b"
        assert kept_a.event_types is kept_b.event_types  # one tuple per distinct filter
        assert kept_b.updated_at is kept_b.created_at
        assert kept_a.to_record() == a.to_record() and kept_b.to_record() == b.to_record()
        assert not hasattr(kept_a, "__dict__") and sys.getsizeof(kept_a) <= 80


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=12).filter(
    str.isprintable
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(printable, printable), min_size=2, max_size=6, unique=True))
def test_packed_entries_sort_as_their_created_at_and_id(keys: list[tuple[str, str]]) -> None:
    entries = {
        pack(Subscription(sub_id, "https://x/", "s", (), True, created, created), n): (
            created,
            sub_id,
        )
        for n, (created, sub_id) in enumerate(keys)
    }
    assert [entries[e] for e in sorted(entries)] == sorted(keys)


def test_a_packed_entry_gives_back_every_field_and_its_offset() -> None:
    plain = Subscription(
        "not-a-uuid", "https://example.com/\u00e9", "whsec_p", ("x",), False, TIMES[0], TIMES[1],
        Protection.of(2.5, "endpoint_gone", TIMES[2]),
    )  # fmt: skip
    for sub, offset in ((plain, 0), (_sub(0, ((), True, 1)), 2**40)):
        entry = pack(sub, offset)
        assert entry_offset(entry) == offset
        back = unpack(entry)
        assert back.to_record() == sub.to_record()
        assert isinstance(back.secret, bytes) and sub.secret_key.encode() not in entry
    rotated = Subscription(
        str(uuid.uuid4()), "https://x/", "whsec_new", (), True, TIMES[0], TIMES[1],
        Protection.of(None, None, None, "whsec_old", TIMES[2], "fifo", "halt"),
    )  # fmt: skip
    back = unpack(pack(rotated, 7))
    assert back.to_record() == rotated.to_record()
    assert (back.ordering, back.on_failure) == ("fifo", "halt")
    assert back.previous_secret_key == "whsec_old" and b"whsec_old" not in pack(rotated, 7)
    sub = _sub(0, (("a",), True, 1))
    texts = (sub.id, sub.created_at, sub.updated_at, sub.target_url, sub.secret_key)
    # one object: its texts, the sealed secret's 28 bytes, a few bytes of framing
    assert len(pack(sub, 10**9)) <= sum(map(len, texts)) + 28 + 24


def test_canonical_uuid_ids_are_keyed_by_number_and_others_by_text() -> None:
    sub_id = str(uuid.uuid4())
    assert entry_key(sub_id) == uuid.UUID(sub_id).int
    for other in (sub_id.upper(), sub_id.replace("-", ""), "sub-1", sub_id + " "):
        assert entry_key(other) == other
    with table() as t:  # both kinds side by side, a number-like text id apart from a UUID's
        number = str(uuid.UUID(sub_id).int)
        for n, key in enumerate((sub_id, sub_id.upper(), number)):
            t.apply(key, msgspec.structs.replace(_sub(0, ((), True, 0)), id=key), n + 1)
        assert [t.get(k).id for k in (sub_id, sub_id.upper(), number)] == [  # type: ignore[union-attr]
            sub_id, sub_id.upper(), number,
        ]  # fmt: skip
        t.apply(sub_id.upper(), None, 9)
        assert t.get(sub_id.upper()) is None and t.get(sub_id) is not None
        assert t.offset_of(sub_id.upper()) == 9 and t.offset_of(sub_id) == 1


def test_a_record_whose_created_at_is_not_printable_is_skipped_as_unreadable() -> None:
    record = {
        "id": IDS[0], "target_url": "https://x/", "secret_key_encrypted": BOX.encrypt("s"),
        "event_types": [], "is_active": True, "created_at": "2026\0", "updated_at": TIMES[0],
    }  # fmt: skip
    with table() as t:
        t._apply_message(IDS[0].encode(), orjson.dumps(record), 1)
        assert t.get(IDS[0]) is None and len(t) == 0
        t._apply_message(IDS[0].encode(), orjson.dumps({**record, "created_at": TIMES[0]}), 2)
        assert t.get(IDS[0]) is not None


def test_matching_stays_right_when_an_event_type_outgrows_its_small_list() -> None:
    rnd = random.Random(5)
    subs = [_new(rnd) for _ in range(3 * SMALL)]
    wild = [msgspec.structs.replace(s, event_types=()) for s in (_new(rnd) for _ in range(20))]
    with table() as t:
        for offset, sub in enumerate(subs + wild):
            t.apply(sub.id, sub, offset)
        gone = rnd.sample(subs, SMALL) + wild[:5]
        for offset, sub in enumerate(gone, len(subs) + len(wild)):
            t.apply(sub.id, None, offset)
        left = sorted(set(subs + wild) - set(gone), key=lambda s: (s.created_at, s.id))
        assert [s.id for s in t.matching("a")] == [s.id for s in left]
        assert [s.id for s in t.matching("b")] == [s.id for s in left if not s.event_types]
