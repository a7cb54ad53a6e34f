"""Domain primitives: recorded events per instance, pulling forgets them, stored events."""

from __future__ import annotations

from cqrs_ddd_persistence_mongo.domain import AggregateRoot, DomainEvent, StoredEvent


class OrderPlaced(DomainEvent):
    total: int = 0


class Order(AggregateRoot):
    id: str
    total: int = 0


def test_recorded_events_belong_to_one_instance() -> None:
    first, second = Order(id="a"), Order(id="b")
    first.record_event(OrderPlaced(total=3))
    assert len(first.domain_events) == 1
    assert second.domain_events == ()
    assert Order.model_validate({"id": "c"}).domain_events == ()


def test_record_fills_the_envelope_and_pull_forgets() -> None:
    order = Order(id="o1", version=4)
    event = order.record_event(OrderPlaced(total=9))
    assert (event.aggregate_id, event.aggregate_type, event.version, event.event_type) == (
        "o1", "Order", 5, "OrderPlaced",
    )
    assert order.pull_domain_events() == [event]
    assert order.collect_events() == []


def test_to_stored_keeps_payload_apart_from_envelope() -> None:
    event = Order(id="o1").record_event(OrderPlaced(total=9, correlation_id="c"))
    stored = event.to_stored(position=7)
    assert isinstance(stored, StoredEvent)
    assert stored.payload == {"total": 9}
    assert (stored.event_id, stored.position, stored.correlation_id) == (event.event_id, 7, "c")


def test_events_survive_alongside_a_subclass_private_attribute() -> None:
    from pydantic import PrivateAttr

    class Tracked(AggregateRoot):
        id: str
        _note: str = PrivateAttr(default="n")

    tracked = Tracked(id="t")
    tracked.record_event(OrderPlaced(total=1))
    assert tracked._note == "n"
    assert [e.total for e in tracked.pull_domain_events()] == [1]


def test_copies_and_pickles_keep_their_events() -> None:
    import pickle

    order = Order(id="p")
    order.record_event(OrderPlaced(total=2))
    assert [e.total for e in pickle.loads(pickle.dumps(order)).domain_events] == [2]
    assert [e.total for e in order.model_copy(deep=True).domain_events] == [2]
    assert Order(id="q").pull_domain_events() == []
