"""Projection base, in-memory batch applier, partitioning and progress: no server needed."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import ProjectionError
from cqrs_ddd_persistence_mongo.projections import (
    Partition,
    Progress,
    Projection,
    apply_batch,
    handles,
    load_projection,
    partition_of,
)
from cqrs_ddd_persistence_mongo.projections.applier import addressed, id_key
from cqrs_ddd_mongo_demo.orders import (
    ORDER_SUMMARIES,
    OrderSummaryProjection,
    fold_orders,
    order_history,
    strip_engine_fields,
)
from cqrs_ddd_persistence_mongo.projections.progress import format_duration


def positioned(events: list[StoredEvent]) -> list[StoredEvent]:
    for position, event in enumerate(events, start=1):
        event.position = position
    return events


def run_batches(projection: Projection, events: list[StoredEvent], size: int, partition: Partition = Partition()) -> dict[str, dict[Any, dict[str, Any]]]:
    """Apply ``events`` batch by batch, keeping the 'stored' documents in a dict (a fake server)."""
    stored: dict[str, dict[Any, dict[str, Any]]] = {c: {} for c in projection.collections}
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        wanted = addressed(projection, batch, partition)
        loaded = {c: {k: dict(stored[c][k]) for k in ids if k in stored[c]} for c, ids in wanted.items()}
        outcome = apply_batch(projection, batch, loaded, partition=partition)
        for collection, docs in outcome.changed.items():
            for key, doc in docs.items():
                stored[collection][key] = dict(doc)
    return stored


def model(stored: dict[str, dict[Any, dict[str, Any]]]) -> dict[str, dict[Any, dict[str, Any]]]:
    return {c: {k: strip_engine_fields(d) for k, d in docs.items()} for c, docs in stored.items()}


HISTORY = positioned(list(order_history(60, 6, concurrent=15)))


# --- handler discovery ----------------------------------------------------------------
def test_handlers_found_by_name_and_decorator() -> None:
    projection = OrderSummaryProjection()
    assert projection.is_document_style
    assert projection.handled_event_types == {"OrderPlaced", "OrderItemAdded", "OrderShipped", "OrderCancelled"}
    item = HISTORY[[e.event_type for e in HISTORY].index("OrderItemAdded")]
    assert projection.addresses(item) == [
        (ORDER_SUMMARIES, item.aggregate_id), ("product_sales", item.payload["sku"])
    ]
    assert projection.projection_name == "order_summary"


def test_projection_name_defaults_to_class_name() -> None:
    class Counting(Projection):
        collections = ("counts",)

        def on_Thing(self, doc: dict[str, Any], event: Any) -> None:
            doc["n"] = doc.get("n", 0) + 1

    assert Counting.projection_name == "Counting"


def test_mixed_styles_are_refused() -> None:
    with pytest.raises(ProjectionError, match="mixes document handlers"):
        class Mixed(Projection):
            collections = ("x",)

            def on_A(self, doc: dict[str, Any], event: Any) -> None: ...

            async def on_B(self, event: Any) -> None: ...


def test_async_document_handler_is_refused() -> None:
    with pytest.raises(ProjectionError, match="must be a plain 'def'"):
        class Bad(Projection):
            collections = ("x",)

            async def on_A(self, doc: dict[str, Any], event: Any) -> None: ...


def test_document_handler_needs_a_collection() -> None:
    with pytest.raises(ProjectionError, match="no collections"):
        class NoCollection(Projection):
            def on_A(self, doc: dict[str, Any], event: Any) -> None: ...
    with pytest.raises(ProjectionError, match="not in"):
        class Elsewhere(Projection):
            collections = ("x",)

            @handles("A", collection="y")
            def a(self, doc: dict[str, Any], event: Any) -> None: ...


def test_load_projection_by_spec() -> None:
    assert isinstance(
        load_projection("cqrs_ddd_mongo_demo.orders:OrderSummaryProjection"),
        OrderSummaryProjection,
    )
    with pytest.raises(ProjectionError, match="module:ProjectionClass"):
        load_projection("no_colon")
    with pytest.raises(ProjectionError, match="cannot import"):
        load_projection("no_such_module_xyz:P")
    with pytest.raises(ProjectionError, match="not a Projection"):
        load_projection("collections:OrderedDict")


# --- the batch applier ----------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 7, 50, len(HISTORY)])
def test_batches_of_any_size_equal_the_direct_fold(size: int) -> None:
    assert model(run_batches(OrderSummaryProjection(), HISTORY, size)) == fold_orders(HISTORY)


def test_coalescing_writes_each_document_once_per_batch() -> None:
    projection = OrderSummaryProjection()
    events = positioned([
        StoredEvent(event_type="OrderItemAdded", aggregate_id="o1", version=v,
                    payload={"sku": "s", "quantity": 1, "unit_price": 1.0})
        for v in range(1, 51)
    ])
    outcome = apply_batch(projection, events, {})
    assert outcome.applied == 50
    assert outcome.writes == 2  # one order document, one product document
    assert outcome.changed[ORDER_SUMMARIES]["o1"]["items"] == 50
    assert outcome.changed[ORDER_SUMMARIES]["o1"]["_last_position"] == 50


def test_out_of_order_batch_is_applied_in_position_order() -> None:
    shuffled = list(HISTORY)
    random.Random(3).shuffle(shuffled)
    assert model(run_batches(OrderSummaryProjection(), shuffled, len(shuffled))) == fold_orders(HISTORY)


def test_replayed_events_are_skipped() -> None:
    projection = OrderSummaryProjection()
    stored = run_batches(projection, HISTORY, 40)
    # replay everything again (a checkpoint lost after the writes): nothing changes
    wanted = addressed(projection, HISTORY)
    loaded = {c: {k: dict(stored[c][k]) for k in ids if k in stored[c]} for c, ids in wanted.items()}
    outcome = apply_batch(projection, HISTORY, loaded)
    assert outcome.applied == 0 and outcome.writes == 0
    assert outcome.skipped == len(HISTORY)
    assert outcome.last_position == HISTORY[-1].position


def test_partitions_split_documents_disjointly_and_cover_everything() -> None:
    projection = OrderSummaryProjection()
    parts = [run_batches(projection, HISTORY, 25, Partition(i, 3)) for i in range(3)]
    merged: dict[str, dict[Any, dict[str, Any]]] = {c: {} for c in projection.collections}
    for part in parts:
        for collection, docs in part.items():
            assert not set(docs) & set(merged[collection])
            merged[collection].update(docs)
    assert all(part[ORDER_SUMMARIES] for part in parts)
    assert model(merged) == fold_orders(HISTORY)


def test_partition_of_is_stable_and_key_order_independent() -> None:
    assert partition_of("order-1", 4) == partition_of("order-1", 4)
    assert partition_of({"a": 1, "b": 2}, 7) == partition_of({"b": 2, "a": 1}, 7)
    counts = [0] * 4
    for i in range(4000):
        counts[partition_of(f"order-{i}", 4)] += 1
    assert min(counts) > 800
    assert partition_of("x", 1) == 0
    with pytest.raises(ProjectionError):
        Partition(2, 2)
    with pytest.raises(ProjectionError):
        Partition(0, 0)


class Flaky(Projection):
    """Fails on the events listed in ``bad`` (always) or ``flaky`` (first time only)."""

    collections = ("counts",)
    max_retries = 2

    def __init__(self, bad: set[int] = set(), flaky: set[int] = set()) -> None:
        self.bad = set(bad)
        self.flaky = set(flaky)
        self.calls = 0

    def on_Tick(self, doc: dict[str, Any], event: Any) -> None:
        self.calls += 1
        doc["n"] = doc.get("n", 0) + 1  # mutate before failing: must be rolled back
        doc.setdefault("seen", []).append(event.position)
        if event.position in self.bad:
            raise RuntimeError(f"bad {event.position}")
        if event.position in self.flaky:
            self.flaky.discard(event.position)
            raise RuntimeError(f"flaky {event.position}")


class StopOnError(Flaky):
    on_error = "stop"


def ticks(n: int) -> list[StoredEvent]:
    return positioned([StoredEvent(event_type="Tick", aggregate_id="c", version=v) for v in range(1, n + 1)])


def test_a_flaky_handler_is_retried_without_double_applying() -> None:
    outcome = apply_batch(Flaky(flaky={3}), ticks(5), {})
    doc = outcome.changed["counts"]["c"]
    assert doc["n"] == 5 and doc["seen"] == [1, 2, 3, 4, 5]
    assert not outcome.parked


def test_a_failing_event_is_parked_and_leaves_no_trace() -> None:
    projection = Flaky(bad={3})
    outcome = apply_batch(projection, ticks(5), {})
    doc = outcome.changed["counts"]["c"]
    assert doc["seen"] == [1, 2, 4, 5] and doc["n"] == 4
    assert [p.event.position for p in outcome.parked] == [3]
    assert outcome.parked[0].attempts == 3 and "bad 3" in str(outcome.parked[0].error)
    assert outcome.last_position == 5  # parked events may be passed


def test_without_retries_a_failure_is_parked_at_once() -> None:
    class NoRetry(Flaky):
        max_retries = 0

    projection = NoRetry(flaky={2})
    outcome = apply_batch(projection, ticks(3), {})
    assert [(p.event.position, p.attempts) for p in outcome.parked] == [(2, 1)]
    assert outcome.changed["counts"]["c"]["seen"] == [1, 3]


def test_stop_mode_ends_the_batch_before_the_failing_event() -> None:
    outcome = apply_batch(StopOnError(bad={3}), ticks(5), {})
    assert outcome.stopped is not None and outcome.stopped.event.position == 3
    assert outcome.last_position == 2
    assert outcome.changed["counts"]["c"]["seen"] == [1, 2]


def test_removed_fields_are_unset() -> None:
    projection = OrderSummaryProjection()
    stored = {"_id": "o1", "status": "placed", "placed_at": "x", "items": 0, "total": 0.0, "lines": {},
              "_last_position": 1}
    cancel = StoredEvent(event_type="OrderCancelled", aggregate_id="o1", version=2, position=2)
    outcome = apply_batch(projection, [cancel], {ORDER_SUMMARIES: {id_key("o1"): stored}})
    assert outcome.unset[(ORDER_SUMMARIES, "o1")] == ["placed_at"]


def test_events_need_positions() -> None:
    with pytest.raises(ProjectionError, match="no position"):
        apply_batch(OrderSummaryProjection(), [StoredEvent(event_type="OrderShipped", aggregate_id="o")], {})


def test_composite_document_ids_are_canonical() -> None:
    class ByPair(Projection):
        collections = ("pairs",)

        @handles("Pair", key=lambda e: e.payload["key"])
        def pair(self, doc: dict[str, Any], event: Any) -> None:
            doc["n"] = doc.get("n", 0) + 1

    events = positioned([
        StoredEvent(event_type="Pair", aggregate_id="a", version=1, payload={"key": {"x": 1, "y": 2}}),
        StoredEvent(event_type="Pair", aggregate_id="a", version=2, payload={"key": {"y": 2, "x": 1}}),
    ])
    outcome = apply_batch(ByPair(), events, {})
    (doc,) = outcome.changed["pairs"].values()
    assert doc["n"] == 2 and list(doc["_id"]) == ["x", "y"]


# --- progress -------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_on_a_terminal() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("rebuild", 1000, stream=out, tty=True, clock=clock)
    clock.now += 2
    progress.update(500)
    assert out.getvalue().startswith("\rrebuild [############------------]  50%  500/1,000 events  250 ev/s  ETA 0:02")
    clock.now += 2
    progress.update(1000)
    progress.finish()
    assert out.getvalue().endswith("100%  1,000/1,000 events  250 ev/s  ETA 0:00\n")


def test_progress_logs_plain_lines_elsewhere_and_rate_limits() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("rebuild", 100, stream=out, tty=False, clock=clock, log_every=5)
    for done in range(1, 11):
        clock.now += 1
        progress.update(done * 10)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "rebuild: 10%  10/100 events  10 ev/s  ETA 0:09"
    assert len(lines) == 3 and lines[-1].startswith("rebuild: 100%  100/100 events")


def test_format_duration() -> None:
    assert format_duration(5) == "0:05"
    assert format_duration(3725) == "1:02:05"


def test_a_shorter_progress_line_leaves_no_stale_characters() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("rebuild", 1000, stream=out, tty=True, clock=clock, redraw=0)
    clock.now += 1000
    progress.update(1)  # a slow start: a long ETA
    clock.now += 1
    progress.update(1000)
    draws = out.getvalue().split("\r")[1:]
    assert len(draws[1]) >= len(draws[0]) and draws[1].rstrip().endswith("ETA 0:00")


def test_human_durations() -> None:
    from cqrs_ddd_persistence_mongo.projections.progress import human_duration

    assert human_duration(0.4219) == "0.42 s"
    assert human_duration(7.25) == "7.2 s"
    assert human_duration(42) == "42 s"
    assert human_duration(271.155) == "4 min 31 s"
    assert human_duration(3725) == "1 h 02 min"


def test_fewer_collections_raises_the_first_threshold_for_the_block_and_restores_it() -> None:
    import gc

    from cqrs_ddd_persistence_mongo._gc import fewer_collections

    original = gc.get_threshold()
    gc.set_threshold(700, original[1], original[2])
    try:
        with fewer_collections(20_000):
            assert gc.get_threshold()[0] == 20_000
            with fewer_collections(50_000):  # a concurrent rebuild shares the raise
                assert gc.get_threshold()[0] == 20_000
            assert gc.get_threshold()[0] == 20_000  # not restored while the first still runs
        assert gc.get_threshold()[0] == 700
        with pytest.raises(RuntimeError), fewer_collections(20_000):
            raise RuntimeError("a failing rebuild")
        assert gc.get_threshold()[0] == 700
        with fewer_collections(None):
            assert gc.get_threshold()[0] == 700
        gc.set_threshold(100_000, original[1], original[2])  # the application's own, higher
        with fewer_collections(20_000):
            assert gc.get_threshold()[0] == 100_000
        assert gc.get_threshold()[0] == 100_000
    finally:
        gc.set_threshold(*original)


def test_gc_threshold_is_a_positive_int_or_none() -> None:
    from cqrs_ddd_persistence_mongo.projections.builder import BuildOptions

    assert BuildOptions(gc_threshold=None).gc_threshold is None
    for bad in (0, -5, 1.5, "20000", True):
        with pytest.raises(ProjectionError, match="gc_threshold"):
            BuildOptions(gc_threshold=bad)  # type: ignore[arg-type]
