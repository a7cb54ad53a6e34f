"""Geometry and full-text operators on the real-wire server with the indexes they need
(2dsphere / text). They are outside the random oracle: their truth is geometric."""

from __future__ import annotations

from typing import Any

import pytest
from _servers import Capabilities

from cqrs_ddd_persistence_mongo import InvalidSpecification
from cqrs_ddd_persistence_mongo.core import search_collection
from cqrs_ddd_persistence_mongo.indexes import ensure_indexes
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder

pytestmark = pytest.mark.integration
b = SpecificationBuilder()


def point(lng: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lng, lat]}


OSLO = point(10.7522, 59.9139)
BERGEN = point(5.3221, 60.3913)
STOCKHOLM = point(18.0686, 59.3293)
PARIS = point(2.3522, 48.8566)
NORWAY_BOX = {"type": "Polygon", "coordinates": [[[4, 57], [13, 57], [13, 65], [4, 65], [4, 57]]]}


async def _cities(connection: Any) -> Any:
    collection = connection.db()["cities"]
    await ensure_indexes(collection, [{"keys": [("loc", "2dsphere")]}])
    await collection.insert_many(
        [
            {"_id": "oslo", "loc": OSLO},
            {"_id": "bergen", "loc": BERGEN},
            {"_id": "stockholm", "loc": STOCKHOLM},
            {"_id": "paris", "loc": PARIS},
            {"_id": "nowhere"},
        ]
    )
    return collection


async def _ids(collection: Any, spec: Any, options: QueryOptions | None = None) -> list[str]:
    return [d["_id"] for d in await search_collection(collection, spec, options)]


async def test_area_operators(real_connection: Any) -> None:
    cities = await _cities(real_connection)
    assert sorted(await _ids(cities, b.where("loc", "within", NORWAY_BOX).build())) == ["bergen", "oslo"]
    assert sorted(await _ids(cities, b.where("loc", "intersects", NORWAY_BOX).build())) == ["bergen", "oslo"]
    # disjoint = not intersects: documents without the field are included (documented)
    assert sorted(await _ids(cities, b.where("loc", "disjoint", NORWAY_BOX).build())) == ["nowhere", "paris", "stockholm"]


async def test_distance_operators(real_connection: Any) -> None:
    cities = await _cities(real_connection)
    # Oslo-Stockholm is ~417 km, Oslo-Bergen ~305 km
    within_350 = {"geometry": OSLO, "distance": 350_000}
    assert sorted(await _ids(cities, b.where("loc", "dwithin", within_350).build())) == ["bergen", "oslo"]
    assert sorted(await _ids(cities, b.where("loc", "distance_lt", {"geometry": OSLO, "distance": 450_000}).build())) == [
        "bergen", "oslo", "stockholm",
    ]
    near = b.where("loc", "near", {"geometry": OSLO, "max_distance": 1_000_000, "min_distance": 1}).build()
    assert sorted(await _ids(cities, near)) == ["bergen", "stockholm"]
    with pytest.raises(InvalidSpecification, match="count"):
        await search_collection(cities, near).count()


async def test_near_sorts_by_distance(pymongo_connection: Any, server_capabilities: Capabilities) -> None:
    if not server_capabilities.near_sorts_by_distance:
        pytest.skip("this server applies $near's distance bounds but does not return documents by distance")
    cities = await _cities(pymongo_connection)
    ordered = await _ids(cities, b.where("loc", "near", {"geometry": BERGEN, "max_distance": 2_000_000}).build())
    assert ordered == ["bergen", "oslo", "stockholm", "paris"]


async def test_text_search(pymongo_connection: Any, server_capabilities: Capabilities) -> None:
    if not server_capabilities.text_indexes:
        pytest.skip("this server does not build text indexes (so no $text); run against a mongod for this")
    collection = pymongo_connection.db()["posts"]
    await collection.create_index([("body", "text")])
    await collection.insert_many(
        [{"_id": 1, "body": "the quick brown fox"}, {"_id": 2, "body": "quick silver"}, {"_id": 3, "body": "brown bear"}]
    )
    assert sorted(await _ids(collection, b.where("body", "fts", "quick").build())) == [1, 2]
    assert await _ids(collection, b.where("body", "fts_phrase", "brown fox").build()) == [1]
    # a leading '-' is text, not negation
    assert sorted(await _ids(collection, b.where("body", "fts", "brown -quick").build())) == [1, 2, 3]


async def test_server_refusal_is_a_library_error(real_connection: Any, server_capabilities: Capabilities) -> None:
    from cqrs_ddd_persistence_mongo import MongoQueryError

    if not server_capabilities.rejects_open_geojson_ring:
        pytest.skip("this server accepts an open GeoJSON ring, so there is no refusal to translate")
    cities = await _cities(real_connection)
    open_ring = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}  # passes the shape check, invalid GeoJSON
    result = search_collection(cities, b.where("loc", "within", open_ring).build())
    for call in (lambda: result.to_list(), lambda: result.first(), lambda: result.count()):
        with pytest.raises(MongoQueryError, match="the server rejected the search on 'cities'"):
            await call()
    with pytest.raises(MongoQueryError, match="GeoJSON"):
        [x async for x in result.stream()]
