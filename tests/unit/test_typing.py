"""What a type checker sees of the package from a user's project, under ``mypy --strict``.

The package is found the way a user's checker finds it (on the interpreter's path, not as
source handed to mypy), so it only counts as typed because it ships ``py.typed``; the
generics must infer without annotations, and ``uow=`` / ``connection`` take the roles'
protocols, not ``Any``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

import cqrs_ddd_persistence_mongo

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install '.[test]')")

USER_SCRIPT = '''
from cqrs_ddd_persistence_mongo import (
    AggregateRoot, ConnectionRole, DomainEvent, EventSourcedAggregate, EventSourcedRepository,
    MongoConnectionManager, MongoRepository, MongoUnitOfWork, QueryOptions, SpecificationBuilder,
    TransactionalUnitOfWork, UnitOfWorkRole,
)


class OrderPlaced(DomainEvent):
    total: int


class Order(AggregateRoot[str]):
    total: int = 0


class Ticket(AggregateRoot):                  # no parameter: the id is a str
    title: str = ""


class Account(EventSourcedAggregate):
    balance: int = 0


class Counter(EventSourcedAggregate[int]):    # an int-keyed stream
    count: int = 0


class OwnUnitOfWork:                          # an application's own unit of work
    session: object = None


async def main(connection: MongoConnectionManager) -> None:
    orders = MongoRepository(connection, "orders", Order)
    reveal_type(orders)  # R1
    spec = SpecificationBuilder().where("total", "gte", 100).build()
    found = await orders.search(spec)
    reveal_type(found)  # R2
    reveal_type(await found)  # R3
    reveal_type(await found.first())  # R4
    reveal_type(await orders.search(QueryOptions().with_specification(spec)))  # R5
    reveal_type(await orders.get("o-1"))  # R6
    reveal_type(await orders.list_all())  # R7
    async for order in orders.list_all():
        reveal_type(order)  # R8
    reveal_type(Ticket().id)  # R9
    accounts = EventSourcedRepository(connection, Account)
    reveal_type(await accounts.get("a-1"))  # R10
    reveal_type(await EventSourcedRepository(connection, Counter).get(7))  # R12
    by_int = MongoRepository[Order, int](connection, "orders", Order)
    reveal_type(await by_int.delete(7))  # R11

    role: ConnectionRole = connection
    full: TransactionalUnitOfWork = MongoUnitOfWork(connection=connection)
    minimal: UnitOfWorkRole = OwnUnitOfWork()
    await orders.add(Order(id="o-1", total=1), uow=OwnUnitOfWork())
    await orders.add(Order(id="o-2", total=2), uow=42)  # E1
    event = OrderPlaced(total=3)
    del role, full, minimal, event
'''

EXPECTED = {
    "R1": "cqrs_ddd_persistence_mongo.core.repository.MongoRepository[user_script.Order, str]",
    "R2": "cqrs_ddd_persistence_mongo.core.search.SearchResult[user_script.Order]",
    "R3": "list[user_script.Order]",
    "R4": "user_script.Order | None",
    "R5": "cqrs_ddd_persistence_mongo.core.search.SearchResult[user_script.Order]",
    "R6": "user_script.Order | None",
    "R7": "list[user_script.Order]",
    "R8": "user_script.Order",
    "R9": "str | None",
    "R10": "user_script.Account | None",
    "R11": "int | None",
    "R12": "user_script.Counter | None",
}


def _line_of(marker: str, source: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"marker {marker} not in the script")


def test_user_script_types_under_strict(tmp_path: Path) -> None:
    source = textwrap.dedent(USER_SCRIPT)
    script = tmp_path / "user_script.py"
    script.write_text(source)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")  # the project's own settings must not leak in
    package_root = Path(cqrs_ddd_persistence_mongo.__file__).resolve().parent.parent
    assert str(package_root) in [str(Path(p).resolve()) for p in sys.path if p], (
        "the package must be found on the interpreter's path (installed or PYTHONPATH=python)"
    )

    out, err, status = mypy_api.run([
        "--strict",
        "--config-file", str(config),
        "--cache-dir", str(tmp_path / "cache"),
        "--python-executable", sys.executable,
        "--no-error-summary",
        "--hide-error-context",
        str(script),
    ])

    lines = out.splitlines()
    assert not err, err
    revealed: dict[int, str] = {}
    errors: list[tuple[int, str]] = []
    for line in lines:
        found = re.match(r".*user_script\.py:(\d+): (note|error): (.*)$", line)
        assert found, f"a message outside the user's script (the package itself must be clean):\n{out}"
        number, kind, message = int(found.group(1)), found.group(2), found.group(3)
        if kind == "error":
            errors.append((number, message))
        elif message.startswith("Revealed type is"):
            revealed[number] = message.removeprefix('Revealed type is "').removesuffix('"')

    assert {marker: revealed.get(_line_of(marker, source)) for marker in EXPECTED} == EXPECTED, out
    # the one error: an int is not a unit of work (uow= is a protocol, not Any)
    assert errors == [(
        _line_of("E1", source),
        'Argument "uow" to "add" of "MongoRepository" has incompatible type "int"; '
        'expected "UnitOfWorkRole | None"  [arg-type]',
    )], out
    assert status == 1
