"""Twin of ``rust/events.rs``: the positions and events of one raw cursor batch of event
documents (BSON documents back to back).

The native decoder covers the documents the event store writes with the common BSON
types and hands any other batch to this twin (pymongo's decoder, then
:func:`~cqrs_ddd_persistence_mongo.core._event_codec.page_of_documents` without upcasting),
so both give the same answer and the same errors for every input.
"""

from __future__ import annotations

from typing import Any

import bson


def decode_events(data: bytes) -> tuple[list[Any], list[Any]]:
    from ..core._event_codec import EVENT_CODEC, NO_UPCASTING, page_of_documents  # the core imports the backend

    return page_of_documents(bson.decode_all(data, EVENT_CODEC), NO_UPCASTING)
