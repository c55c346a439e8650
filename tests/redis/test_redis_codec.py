"""Value texts, key texts and the whole-event idempotency store."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from riskengine.state.redis import RedisDecisionStore, RedisStateError
from riskengine.state.redis.codec import (
    decode_value,
    distinct_text,
    key_text,
    micro_units,
    slot_text,
    value_text,
)

VALUES = st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False),
                   st.text(), st.booleans(), st.lists(st.integers(), max_size=3))


@given(VALUES)
def test_value_text_round_trips(v: object) -> None:
    back = decode_value(value_text(v).encode())
    assert back == v and type(back) is type(v)


@given(VALUES, VALUES)
def test_distinct_text_is_python_equality(a: object, b: object) -> None:
    assert (distinct_text(a) == distinct_text(b)) == (a == b)


def test_slot_texts() -> None:
    """Micro-units for sum/avg/stddev, computed here; the value text for the others, with
    the distinct key only when count_distinct reads it and it differs."""
    assert slot_text(0.1, quantized=True, distinct=False) == "100000"
    assert slot_text(2.5e-6, quantized=True, distinct=False) == "2"  # half to even
    assert slot_text(-0.5e-6, quantized=True, distinct=False) == "0"
    assert slot_text(10**15, quantized=True, distinct=False) == str(10**21)
    assert slot_text(5e9, quantized=True, distinct=False) == "5000000000000000"
    assert slot_text(0.1, quantized=False, distinct=True) == "0.1"
    assert slot_text(3.0, quantized=False, distinct=True) == "3.0\x023"
    assert slot_text(3.0, quantized=False, distinct=False) == "3.0"
    assert slot_text(True, quantized=False, distinct=True) == "T\x021"
    assert slot_text("a\x02b", quantized=False, distinct=True) == "'a\x02b"
    with pytest.raises(RedisStateError, match="must be a number"):
        micro_units("12", "amount")
    with pytest.raises(RedisStateError, match="must be a number"):
        slot_text(True, quantized=True, distinct=False)


def test_key_text() -> None:
    assert key_text((1,)) == key_text((1.0,)) == key_text((True,)) == "1"
    assert key_text(("1",)) == "'1"
    assert key_text(("a", 2)) != key_text(("a", "2"))
    assert key_text(("x" * 500,)).startswith("#")


def test_decision_store_horizon(client: redis.Redis) -> None:
    store = RedisDecisionStore(client, "s", horizon_ms=1000)

    def lookup(clock: int | None) -> bytes | None:
        return store.live(client.get(store.key("x")), clock)

    assert lookup(None) is None
    assert store.remember("x", 5000, '{"n": 1}', None) is None
    assert lookup(5999) == b'5000|{"n": 1}'  # the whole record, time first
    assert store.remember("x", 5999, '{"n": 2}', 5999) == b'5000|{"n": 1}'  # first wins
    assert lookup(6000) is None  # 5000 > 6000 - 1000 fails: forgotten
    assert store.remember("x", 6000, '{"n": 3}', 6000) is None
    assert lookup(6000) == b'6000|{"n": 3}'
    assert 0 < client.pttl(store.key("x")) <= 600_000
