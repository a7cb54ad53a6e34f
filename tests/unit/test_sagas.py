"""Saga steps and compensation: what ``@saga_step`` records and how ``compensate_all`` undoes."""

from __future__ import annotations

import pytest

from cqrs_ddd_persistence_mongo import SagaState, SagaStatus, saga_step
from cqrs_ddd_persistence_mongo.exceptions import SagaCompensationError


class Booking(SagaState):
    undone: list[str] = []

    @saga_step(compensation="release_seat")
    def reserve_seat(self, seat: str) -> None:
        self.current_step = seat

    @saga_step(compensation="void_ticket")
    async def issue_ticket(self, printer: object) -> None:
        if printer is None:
            raise RuntimeError("no printer")

    @saga_step
    def notify(self) -> None:
        pass

    def release_seat(self, seat: str) -> None:
        self.undone.append(f"seat {seat}")

    async def void_ticket(self, printer: object) -> None:
        if printer == "jammed":
            raise RuntimeError("printer jammed")
        self.undone.append("ticket")


def history(saga: SagaState) -> list[tuple[str, str]]:
    return [(h["step"], h["status"]) for h in saga.step_history]


async def test_steps_record_completion_and_failure() -> None:
    saga = Booking()
    saga.reserve_seat("12A")
    with pytest.raises(RuntimeError, match="no printer"):
        await saga.issue_ticket(None)
    saga.notify()
    assert history(saga) == [("reserve_seat", "completed"), ("issue_ticket", "failed"), ("notify", "completed")]
    assert saga.step_history[1]["error"] == "no printer"


async def test_compensate_all_undoes_completed_steps_in_reverse_with_their_arguments() -> None:
    saga = Booking()
    saga.reserve_seat("12A")
    await saga.issue_ticket("laser")
    assert await saga.compensate_all() == ["void_ticket", "release_seat"]
    assert saga.undone == ["ticket", "seat 12A"]
    assert saga.status is SagaStatus.COMPENSATING
    assert history(saga)[-2:] == [("void_ticket", "compensated"), ("release_seat", "compensated")]


async def test_a_failed_compensation_propagates_and_a_retry_resumes() -> None:
    saga = Booking()
    saga.reserve_seat("3C")
    await saga.issue_ticket("jammed")
    with pytest.raises(RuntimeError, match="printer jammed"):
        await saga.compensate_all()
    assert history(saga)[-1] == ("void_ticket", "compensation_failed") and saga.undone == []
    saga._step_arguments()["issue_ticket"] = (("laser",), {})  # the printer was fixed
    assert await saga.compensate_all() == ["void_ticket", "release_seat"]
    assert await saga.compensate_all() == []


async def test_a_loaded_saga_takes_services_by_keyword_and_says_what_is_missing() -> None:
    saga = Booking()
    saga.reserve_seat("1A")
    loaded = Booking.model_validate(saga.model_dump())  # as read back from the store
    with pytest.raises(SagaCompensationError, match="compensation 'release_seat' of step 'reserve_seat'.*compensate_all") as raised:
        await loaded.compensate_all()
    assert isinstance(raised.value, TypeError)  # what code written for a bare call catches
    assert await loaded.compensate_all(seat="1A", printer="unused") == ["release_seat"]
    assert loaded.undone == ["seat 1A"]


async def test_provided_services_serve_a_bare_compensate_all_and_keywords_override_them() -> None:
    saga = Booking()
    saga.reserve_seat("1A")
    loaded = Booking.model_validate(saga.model_dump())
    loaded.provide_services(seat="1B")
    assert await loaded.compensate_all(seat="1A") == ["release_seat"]  # the keyword wins
    assert loaded.undone == ["seat 1A"]
    again = Booking.model_validate(saga.model_dump())
    again.provide_services(seat="1C")
    assert await again.compensate_all() == ["release_seat"]
    assert again.undone == ["seat 1C"]
    assert set(again.model_dump()) == set(saga.model_dump())  # services are never persisted


def test_the_saga_repository_checks_its_services() -> None:
    from cqrs_ddd_persistence_mongo import InvalidStoreArgument, MongoConnectionManager, MongoSagaRepository

    connection = MongoConnectionManager()  # lazy: nothing connects here
    with pytest.raises(InvalidStoreArgument, match="services must map keyword names"):
        MongoSagaRepository(connection, Booking, services={"not a name": 1})
    assert MongoSagaRepository(connection, Booking, services={"seat": "1A"}).services == {"seat": "1A"}


async def test_an_unknown_compensation_is_named() -> None:
    class Broken(SagaState):
        @saga_step(compensation="missing")
        def step(self) -> None:
            pass

    saga = Broken()
    saga.step()
    with pytest.raises(SagaCompensationError, match="Broken.missing"):
        await saga.compensate_all()
