"""Aggregate validation must cost what a plain pydantic model costs: a declared private
event list once made every load of an aggregate ~300x, then ~3x, slower."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cqrs_ddd_persistence_mongo.domain import AggregateRoot

from .conftest import best_times, report


class PlainOrder(BaseModel):
    id: str
    version: int = 0
    total: int = 0
    status: str = "new"


class Order(AggregateRoot):
    id: str
    total: int = 0
    status: str = "new"


DATA = {"id": "o1", "version": 3, "total": 10, "status": "paid"}


def test_aggregate_validation_costs_like_a_plain_model(benchmark: Any) -> None:
    benchmark(Order.model_validate, DATA)
    aggregate, plain = best_times(
        lambda: Order.model_validate(DATA), lambda: PlainOrder.model_validate(DATA), number=2000, repeat=15
    )
    report(f"AggregateRoot.model_validate {aggregate * 1e6:.2f} us vs plain model {plain * 1e6:.2f} us "
           f"({aggregate / plain:.1f}x)")
    assert aggregate / plain <= 1.5
