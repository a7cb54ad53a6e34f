"""Versioned whole-document saves (optimistic concurrency on ``_version``) for stores that
own a mapper: insert when new, replace only if the stored version is the one we loaded."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from ..core._session import session_of
from ..exceptions import DuplicateEntityError, VersionMismatchError


class VersionedDocuments:
    """Saves entities of ``store.mapper`` into ``store``'s collection.

    ``entity.version`` is the version it was loaded at (0: never saved); a successful save
    stores ``version + 1`` and updates the entity.
    """

    def __init__(self, store: Any) -> None:
        self._store = store

    async def save(self, entity: Any, uow: Any) -> Any:
        store = self._store
        expected = entity.version
        doc = store.mapper.to_doc(entity)
        doc["_version"] = expected + 1
        session = session_of(uow)
        collection = await store._coll()
        with store._errors(f"saving {type(entity).__name__} {entity.id!r}"):
            if expected == 0:
                try:
                    await collection.insert_one(doc, session=session)
                except DuplicateKeyError as exc:
                    raise DuplicateEntityError(
                        f"{type(entity).__name__} {entity.id!r} already exists in '{store.collection_name}'; "
                        "load it and save the loaded copy instead of a new one",
                        entity_id=entity.id,
                        expected=0,
                        collection=store.collection_name,
                    ) from exc
            else:
                result = await collection.replace_one(
                    {"_id": doc["_id"], "_version": expected}, doc, session=session
                )
                if result.matched_count != 1:
                    current = await collection.find_one({"_id": doc["_id"]}, {"_version": 1}, session=session)
                    raise VersionMismatchError(
                        entity_id=entity.id,
                        expected=expected,
                        actual=None if current is None else current.get("_version"),
                        collection=store.collection_name,
                    )
        entity.version = expected + 1
        return entity
