"""A projection module that, in a child process only, registers its own (different)
PricePaid upcaster at import: a rebuild worker importing it holds a registry that
differs from its parent's."""

from __future__ import annotations

import multiprocessing
from typing import Any

from cqrs_ddd_persistence_mongo import upcasters
from cqrs_ddd_persistence_mongo.projections import Projection


def rogue_v1(payload: dict[str, Any]) -> dict[str, Any]:
    return {"cents": 0, "currency": "XXX"}


if multiprocessing.parent_process() is not None:
    upcasters.register("PricePaid", 1, rogue_v1, to_version=3)


class RogueTakings(Projection):
    projection_name = "takings"
    collections = ("takings",)

    def new_document(self, collection: str, doc_id: Any, event: Any) -> dict[str, Any]:
        return {"cents": 0}

    def on_PricePaid(self, doc: dict[str, Any], event: Any) -> None:
        doc["cents"] += event.payload["cents"]
