"""The upcaster registry: chains validated at registration, applied at the event decoder."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo.core._event_codec import from_document
from cqrs_ddd_persistence_mongo.core.upcasting import UpcasterRegistry
from cqrs_ddd_persistence_mongo.exceptions import InvalidUpcaster, UpcastFailed


def v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "currency": "EUR"}


def v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"total": {"amount": payload["amount"], "currency": payload["currency"]}}


def doc(schema_version: int | None, payload: dict[str, Any]) -> dict[str, Any]:
    document = {"_id": "e1", "event_type": "Paid", "aggregate_id": "o1", "version": 1, "position": 1,
                "payload": payload}
    if schema_version is not None:
        document["schema_version"] = schema_version
    return document


def test_a_chain_takes_every_old_version_to_the_current_one() -> None:
    registry = UpcasterRegistry()
    registry.register_chain("Paid", {1: v1_to_v2, 2: v2_to_v3})
    assert registry.current == {"Paid": 3}
    v3 = {"total": {"amount": 5, "currency": "EUR"}}
    assert registry.upcast("Paid", 1, {"amount": 5}) == (3, v3)
    assert registry.upcast("Paid", 2, {"amount": 5, "currency": "EUR"}) == (3, v3)
    assert registry.upcast("Paid", 3, v3) == (3, v3)
    assert registry.upcast("Other", 1, {"a": 1}) == (1, {"a": 1})


def test_the_decoder_upcasts_and_leaves_the_document_untouched() -> None:
    registry = UpcasterRegistry()
    registry.register("Paid", 1, v1_to_v2)
    registry.register("Paid", 2, v2_to_v3)
    stored = doc(None, {"amount": 7})  # no schema_version field: v1
    before = copy.deepcopy(stored)
    event = from_document(stored, registry)
    assert (event.schema_version, event.payload) == (3, {"total": {"amount": 7, "currency": "EUR"}})
    assert stored == before
    current = from_document(doc(3, {"total": {"amount": 1, "currency": "USD"}}), registry)
    assert current.payload == {"total": {"amount": 1, "currency": "USD"}}


def test_registration_order_does_not_matter_within_a_contiguous_chain() -> None:
    registry = UpcasterRegistry()
    registry.register("Paid", 2, v2_to_v3)
    registry.register("Paid", 1, v1_to_v2)
    assert registry.current == {"Paid": 3}


def test_a_step_may_jump_versions() -> None:
    registry = UpcasterRegistry()

    @registry.upcaster("Paid", 1, to_version=3)
    def straight(payload: dict[str, Any]) -> dict[str, Any]:
        return {"jumped": True}

    registry.register("Paid", 2, lambda p: {"from2": True})
    assert registry.upcast("Paid", 1, {}) == (3, {"jumped": True})
    assert registry.upcast("Paid", 2, {}) == (3, {"from2": True})


@pytest.mark.parametrize(
    "steps, message",
    [
        ({1: v1_to_v2, 3: v2_to_v3}, "chain from v1 stops at v2"),  # gap
        ({2: (v1_to_v2, 2)}, "must lead to a later version"),  # self loop
        ({3: (v1_to_v2, 1)}, "must lead to a later version"),  # backwards: a cycle
        ({0: v1_to_v2}, "ints >= 1"),
        ({1: "not callable"}, "callable"),
    ],
)
def test_invalid_chains_are_refused_and_nothing_is_registered(steps: Any, message: str) -> None:
    registry = UpcasterRegistry()
    with pytest.raises(InvalidUpcaster, match=message):
        registry.register_chain("Paid", steps)
    assert registry.current == {} and not registry


def test_a_duplicate_is_refused_and_the_existing_chain_kept() -> None:
    registry = UpcasterRegistry()
    registry.register("Paid", 1, v1_to_v2)
    with pytest.raises(InvalidUpcaster, match="already has an upcaster"):
        registry.register("Paid", 1, v2_to_v3)
    with pytest.raises(InvalidUpcaster, match="stops at"):
        registry.register("Paid", 3, v2_to_v3)  # would leave v2 -> v3 missing
    assert registry.upcast("Paid", 1, {"amount": 1}) == (2, {"amount": 1, "currency": "EUR"})


def test_a_failing_upcaster_raises_a_library_error_naming_the_event() -> None:
    registry = UpcasterRegistry()
    registry.register("Paid", 1, lambda payload: payload["missing"])
    with pytest.raises(UpcastFailed, match=r"'e1' \(Paid\) from v1 to v2 raised KeyError"):
        from_document(doc(1, {}), registry)
    registry.clear()
    registry.register("Paid", 1, lambda payload: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(UpcastFailed, match="returned NoneType"):
        from_document(doc(1, {}), registry)


def test_unregister_forgets_one_event_type() -> None:
    registry = UpcasterRegistry()
    registry.register("Paid", 1, v1_to_v2)
    registry.register("Shipped", 1, v1_to_v2)
    registry.unregister("Paid")
    assert registry.current == {"Shipped": 2}


def test_malformed_registrations_and_payloads_raise_library_errors() -> None:
    registry = UpcasterRegistry()
    with pytest.raises(InvalidUpcaster, match="steps must be a dict"):
        registry.register_chain("Paid", [v1_to_v2])  # type: ignore[arg-type]
    with pytest.raises(InvalidUpcaster, match="non-empty string"):
        registry.register("", 1, v1_to_v2)
    registry.register("Paid", 1, v1_to_v2)
    with pytest.raises(UpcastFailed, match="not a document"):
        registry.upcast("Paid", 1, ["not", "a", "dict"])  # type: ignore[arg-type]


def test_another_process_adopts_exactly_the_registered_steps() -> None:
    parent = UpcasterRegistry()
    parent.register_chain("Paid", {1: v1_to_v2, 2: v2_to_v3})
    worker = UpcasterRegistry()
    worker.adopt(parent.steps())
    assert worker.steps() == parent.steps() and worker.current == {"Paid": 3}
    worker.adopt(parent.steps())  # the same steps registered at import time are fine
    assert worker.upcast("Paid", 1, {"amount": 5}) == parent.upcast("Paid", 1, {"amount": 5})


@pytest.mark.parametrize("worker_steps", [
    {"Paid": {1: v2_to_v3}},  # the same type with another step
    {"Refunded": {1: v1_to_v2}},  # a type the parent does not upcast
])
def test_a_registry_that_differs_refuses_to_adopt_and_stays_as_it_was(worker_steps: dict[str, Any]) -> None:
    parent = UpcasterRegistry()
    parent.register_chain("Paid", {1: v1_to_v2, 2: v2_to_v3})
    worker = UpcasterRegistry()
    for event_type, steps in worker_steps.items():
        worker.register_chain(event_type, steps)
    before = (worker.steps(), dict(worker.current))
    with pytest.raises(InvalidUpcaster, match="differ from the ones given"):
        worker.adopt(parent.steps())
    assert (worker.steps(), worker.current) == before
