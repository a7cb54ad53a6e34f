"""build_upserts / canonical_id: native and pure agree on generated documents, keys and errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import both, outcome

names = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["id", "_id", "$set", "a.b", "x\0y", "_last_position", "_last_event_id", "k", "z"]),
)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=2).map(tuple),
        st.dictionaries(names, children, max_size=3),
    ),
    max_leaves=12,
)
keys = st.one_of(
    st.text(max_size=4),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(names, st.one_of(leaves, st.dictionaries(names, leaves, max_size=2)), max_size=3),
)
docs = st.one_of(
    st.fixed_dictionaries({"id": keys}, optional={"_id": keys}).flatmap(
        lambda base: st.dictionaries(names, values, max_size=5).map(lambda extra: {**base, **extra})
    ),
    st.dictionaries(names, values, max_size=4),
    st.integers(),
)
guards = st.sampled_from(["_last_position", "k", None])
event_guards = st.sampled_from(["_last_event_id", "z", None])
id_fields = st.sampled_from(["id", "_id", "k", "a.b"])
labels = st.sampled_from(["docs", "", "batch"])


@settings(max_examples=250, deadline=None)
@given(st.lists(docs, max_size=4), id_fields, guards, event_guards, labels)
def test_build_upserts_agrees(batch, id_field, position_field, event_id_field, label) -> None:
    native, pure = both("build_upserts")
    args = (batch, id_field, position_field, event_id_field, label)
    n, p = outcome(native, *args), outcome(pure, *args)
    assert n == p
    if n[0] == "ok":  # same shapes, including field order
        assert [list(f) for f, _ in n[1]] == [list(f) for f, _ in p[1]]
        assert [list(u["$set"]) for _, u in n[1]] == [list(u["$set"]) for _, u in p[1]]


@settings(max_examples=200, deadline=None)
@given(keys)
def test_canonical_id_agrees(key) -> None:
    native, pure = both("canonical_id")
    n, p = outcome(native, key), outcome(pure, key)
    assert n == p
    if n[0] == "ok" and isinstance(n[1], dict):
        assert list(n[1]) == list(p[1]) == sorted(n[1])


def test_defaults_and_non_list_agree() -> None:
    native, pure = both("build_upserts")
    doc = {"id": "a", "v": 1, "_last_position": 3, "_last_event_id": "e"}
    assert native([doc]) == pure([doc])
    assert outcome(native, {"id": 1}) == outcome(pure, {"id": 1})
    assert outcome(native, {"id": 1})[0] == "error"


def test_deep_composite_key_errors_agree() -> None:
    native, pure = both("canonical_id")
    key: dict = {}
    for _ in range(120):
        key = {"n": key}
    n = outcome(native, key)
    assert n == outcome(pure, key)
    assert n[0] == "error" and "100 levels" in n[1][1]
