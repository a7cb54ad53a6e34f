"""Creating a store's indexes on first use without breaking the caller's transaction.

A transaction's snapshot starts with its first operation. Creating a collection or an
index outside it afterwards is a catalog change the transaction's next write to that
collection conflicts with. So, inside a transaction on a collection that does not exist
yet, the indexes are created in the transaction (they commit or vanish with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..indexes import ensure_indexes, to_index_model


async def ensure_store_indexes(connection: Any, collection: Any, specs: Sequence[Any], session: Any) -> bool:
    """Create ``specs`` on ``collection``; True when they are durable, False when they were
    created inside a transaction that may still abort (check again next time)."""
    if connection.driver().in_transaction(session):
        exists = await collection.database.list_collection_names(filter={"name": collection.name})
        if not exists:
            await collection.create_indexes([to_index_model(spec) for spec in specs], session=session)
            return False
    await ensure_indexes(collection, specs)
    return True
