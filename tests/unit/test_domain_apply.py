"""AggregateRoot.apply: dispatch by @applies, version advance, StoredEvent decoding,
unhandled events, and event-sourced aggregates whose record applies."""

from __future__ import annotations

import pickle

import pytest

from cqrs_ddd_persistence_mongo.domain import (
    AggregateRoot,
    DomainEvent,
    EventSourcedAggregate,
    StoredEvent,
    applies,
)
from cqrs_ddd_persistence_mongo.exceptions import (
    EventOutOfOrder,
    EventSourcingError,
    MongoPersistenceError,
    UndecodableEvent,
    UnhandledEvent,
)


class ItemAdded(DomainEvent):
    sku: str
    quantity: int = 1


class Renamed(DomainEvent):
    event_type: str = "cart.renamed"
    name: str


class Cart(EventSourcedAggregate):
    items: dict[str, int] = {}
    name: str = ""
    log: list[str] = []

    @applies(ItemAdded)
    def _added(self, event: ItemAdded) -> None:
        assert isinstance(event, ItemAdded)
        self.items = {**self.items, event.sku: self.items.get(event.sku, 0) + event.quantity}

    @applies(Renamed)
    def _renamed(self, event: Renamed) -> None:
        self.name = event.name

    @applies("Noted")
    def _noted(self, event: object) -> None:
        self.log = [*self.log, type(event).__name__]

    def add(self, sku: str, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.record_event(ItemAdded(sku=sku, quantity=quantity))


class StateCart(AggregateRoot):
    items: int = 0

    @applies(ItemAdded)
    def _added(self, event: ItemAdded) -> None:
        self.items += event.quantity


def test_record_applies_and_numbers_the_stream() -> None:
    cart = Cart(id="c1")
    cart.add("a", 2)
    cart.add("a")
    cart.record_event(Renamed(name="mine"))
    assert cart.items == {"a": 3} and cart.name == "mine" and cart.version == 3
    assert [e.version for e in cart.domain_events] == [1, 2, 3]
    assert [e.event_type for e in cart.domain_events] == ["ItemAdded", "ItemAdded", "cart.renamed"]


def test_replaying_the_recorded_events_gives_the_same_state() -> None:
    cart = Cart(id="c1")
    cart.add("a", 2)
    cart.add("b")
    replayed = Cart(id="c1")
    for event in cart.pull_domain_events():
        replayed.apply(event.to_stored(position=event.version))  # as read from the store
    assert replayed == cart


def test_a_stored_event_is_decoded_into_the_handler_class() -> None:
    cart = Cart(id="c1")
    cart.apply(StoredEvent(event_type="ItemAdded", aggregate_id="c1", version=1, payload={"sku": "x", "quantity": 4}))
    cart.apply(StoredEvent(event_type="cart.renamed", aggregate_id="c1", version=2, payload={"name": "n"}))
    assert (cart.items, cart.name, cart.version) == ({"x": 4}, "n", 2)


def test_a_string_handler_gets_the_event_as_given() -> None:
    cart = Cart(id="c1")
    cart.apply(StoredEvent(event_type="Noted", version=1))
    cart.apply(DomainEvent(event_type="Noted", version=2))
    assert cart.log == ["StoredEvent", "DomainEvent"]


def test_a_generic_domain_event_is_converted_to_the_handler_class() -> None:
    cart = Cart(id="c1")
    cart.apply(DomainEvent(event_type="ItemAdded", sku="z", quantity=2))  # extra fields allowed
    assert cart.items == {"z": 2} and cart.version == 1


def test_an_undecodable_payload_names_the_event_and_suggests_an_upcaster() -> None:
    cart = Cart(id="c1")
    with pytest.raises(UndecodableEvent, match="register an upcaster") as info:
        cart.apply(StoredEvent(event_id="e1", event_type="ItemAdded", version=1, payload={"product": "x"}))
    assert isinstance(info.value, MongoPersistenceError) and cart.version == 0


def test_unhandled_event_raises_by_default_and_can_be_ignored() -> None:
    cart = Cart(id="c1")
    with pytest.raises(UnhandledEvent, match="no handler for event type 'Unknown'"):
        cart.apply(StoredEvent(event_type="Unknown", version=1))
    assert cart.version == 0

    class Lenient(Cart):
        ignore_unhandled_events = True

    lenient = Lenient(id="c1")
    lenient.apply(StoredEvent(event_type="Unknown", version=1))
    assert lenient.version == 1


def test_event_sourced_aggregate_refuses_out_of_order_events() -> None:
    cart = Cart(id="c1")
    cart.apply(ItemAdded(sku="a", version=1))
    with pytest.raises(EventOutOfOrder, match="at version 1 and was given ItemAdded version 1"):
        cart.apply(ItemAdded(sku="a", version=1))
    with pytest.raises(EventOutOfOrder):
        cart.apply(ItemAdded(sku="a", version=3))
    assert cart.items == {"a": 1} and cart.version == 1


def test_a_failed_command_records_nothing_and_a_failed_handler_records_nothing() -> None:
    cart = Cart(id="c1")
    with pytest.raises(ValueError):
        cart.add("a", 0)

    class Broken(Cart):
        @applies(ItemAdded)
        def _added(self, event: ItemAdded) -> None:
            raise RuntimeError("boom")

    broken = Broken(id="b")
    with pytest.raises(RuntimeError):
        broken.add("a")
    assert broken.domain_events == () and broken.version == 0 and cart.domain_events == ()


def test_subclasses_inherit_and_override_handlers() -> None:
    class Doubling(Cart):
        def _added(self, event: ItemAdded) -> None:  # overrides by name, keeps the registration
            self.items = {event.sku: event.quantity * 2}

    cart = Doubling(id="d")
    cart.add("a", 2)
    cart.record_event(Renamed(name="kept"))
    assert cart.items == {"a": 4} and cart.name == "kept"


def test_two_handlers_for_one_type_are_refused_at_class_creation() -> None:
    with pytest.raises(EventSourcingError, match="two handlers"):

        class Twice(EventSourcedAggregate):
            @applies(ItemAdded)
            def one(self, event: ItemAdded) -> None: ...

            @applies("ItemAdded")
            def two(self, event: ItemAdded) -> None: ...


def test_applies_refuses_what_is_not_an_event_type() -> None:
    with pytest.raises(EventSourcingError):
        applies(int)  # type: ignore[arg-type]
    with pytest.raises(EventSourcingError):
        applies()


def test_state_stored_aggregates_record_without_applying() -> None:
    cart = StateCart(id="s", version=4)
    event = cart.record_event(ItemAdded(sku="a", quantity=2))
    assert (cart.items, cart.version, event.version) == (0, 4, 5)  # unchanged behaviour
    cart.apply(event)  # the seeds' replay loop: version follows the stream
    assert (cart.items, cart.version) == (2, 5)
    cart.apply(ItemAdded(sku="a"))  # an event without a version advances by one
    assert (cart.items, cart.version) == (3, 6)


def test_event_sourced_aggregates_pickle_and_copy() -> None:
    cart = Cart(id="c1")
    cart.add("a")
    clone = pickle.loads(pickle.dumps(cart))
    assert clone == cart and len(clone.domain_events) == 1
    clone.add("b")
    assert cart.version == 1 and clone.version == 2


def test_apply_refuses_what_is_not_an_event() -> None:
    cart = Cart(id="c1")
    for wrong in (object(), {"event_type": "ItemAdded"}, StoredEvent(event_type="ItemAdded", version=None)):  # type: ignore[arg-type]
        with pytest.raises(EventSourcingError, match="takes a DomainEvent or StoredEvent"):
            cart.apply(wrong)
    assert cart.version == 0
