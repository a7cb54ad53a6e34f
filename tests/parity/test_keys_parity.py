"""validate_keys: native and pure agree on generated documents, errors and messages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import both, outcome

keys = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["$set", "a.b", "x\0y", "$", ".", "ok", "_id"]),
    st.integers(-3, 3),
)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
documents = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_native_and_pure_agree(doc: object) -> None:
    native, pure = both("validate_keys")
    assert outcome(native, doc) == outcome(pure, doc)


def _nested(depth: int) -> dict:
    doc: dict = {}
    for _ in range(depth - 1):
        doc = {"n": doc}
    return doc


def test_depth_limit_agrees() -> None:
    native, pure = both("validate_keys")
    for depth in (99, 100, 101, 150):
        assert outcome(native, _nested(depth)) == outcome(pure, _nested(depth))
    assert outcome(pure, _nested(100))[0] == "ok"
    assert outcome(pure, _nested(101))[0] == "error"


def test_cycle_is_an_error_in_both() -> None:
    native, pure = both("validate_keys")
    doc: dict = {"a": []}
    doc["a"].append(doc)
    n, p = outcome(native, doc), outcome(pure, doc)
    assert n == p
    assert n[0] == "error" and "cycle" in n[1][1]
