"""Saga state: a long-running process persisted between the messages that drive it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, overload

from pydantic import Field

from ..exceptions import SagaCompensationError
from .aggregate import AggregateRoot
from .events import new_id, utc_now


class SagaStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_Step = TypeVar("_Step", bound=Callable[..., Any])


@overload
def saga_step(name: _Step, *, compensation: str | None = None) -> _Step: ...
@overload
def saga_step(name: str | None = None, *, compensation: str | None = None) -> Callable[[_Step], _Step]: ...


def saga_step(name: Any = None, *, compensation: str | None = None) -> Any:
    """Mark a saga method (sync or async) as a step, optionally naming the method that undoes it.

    A step that returns records ``{"step", "status": "completed", "compensation"}`` in
    ``step_history``; a step that raises records ``"failed"`` with the error and re-raises.
    :meth:`SagaState.compensate_all` later undoes the completed steps in reverse order.
    Usable bare (``@saga_step``) or with arguments (``@saga_step(compensation="refund")``).
    """
    if callable(name):
        return saga_step(None, compensation=compensation)(name)

    def decorate(method: _Step) -> _Step:
        step = name or method.__name__

        def succeeded(saga: SagaState, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            saga._step_arguments()[step] = (args, kwargs)
            saga.record_step(step, status="completed", compensation=compensation)

        if inspect.iscoroutinefunction(method):
            @functools.wraps(method)
            async def run_async(saga: SagaState, *args: Any, **kwargs: Any) -> Any:
                try:
                    result = await method(saga, *args, **kwargs)
                except Exception as exc:
                    saga.record_step(step, status="failed", error=str(exc))
                    raise
                succeeded(saga, args, kwargs)
                return result

            wrapper: Any = run_async
        else:
            @functools.wraps(method)
            def run(saga: SagaState, *args: Any, **kwargs: Any) -> Any:
                try:
                    result = method(saga, *args, **kwargs)
                except Exception as exc:
                    saga.record_step(step, status="failed", error=str(exc))
                    raise
                succeeded(saga, args, kwargs)
                return result

            wrapper = run
        wrapper.__saga_step__ = step
        wrapper.__saga_compensation__ = compensation
        return wrapper  # type: ignore[no-any-return]

    return decorate


def _accepted(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``method`` takes (all of them if it takes ``**kwargs``)."""
    parameters = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {key: value for key, value in kwargs.items() if key in parameters}


class SagaState(AggregateRoot):
    """Base of sagas. Subclass it with the saga's own fields and ``@saga_step`` methods."""

    id: Any = Field(default_factory=new_id)
    saga_type: str = ""
    correlation_id: str | None = None
    status: SagaStatus = SagaStatus.RUNNING
    current_step: str | None = None
    step_history: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    suspended_at: datetime | None = None
    suspension_reason: str | None = None
    timeout_at: datetime | None = None
    completed_at: datetime | None = None

    def model_post_init(self, __context: Any) -> None:
        if not self.saga_type:
            self.saga_type = type(self).__name__

    def _touch(self) -> None:
        self.updated_at = utc_now()

    def record_step(self, step: str, **details: Any) -> None:
        self.current_step = step
        self.step_history.append({"step": step, "at": utc_now(), **details})
        self._touch()

    def _step_arguments(self) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
        """Arguments each step ran with in this process (services, clients): never persisted."""
        arguments: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = self._private().setdefault(
            "_saga_step_arguments", {}
        )
        return arguments

    def _private(self) -> dict[str, Any]:
        private = self.__pydantic_private__
        if private is None:
            private = {}
            object.__setattr__(self, "__pydantic_private__", private)
        return private

    def provide_services(self, **services: Any) -> None:
        """Give this saga the services its compensations take by keyword (``payment_service=p``)
        when this process did not run their steps, e.g. a saga loaded from the store. Never
        persisted; ``MongoSagaRepository(services=...)`` calls it on every saga it loads."""
        self._private().setdefault("_saga_services", {}).update(services)

    async def compensate_all(self, *args: Any, **kwargs: Any) -> list[str]:
        """Undo every completed step that names a compensation, last step first.

        Each compensation is called with the arguments its step ran with when this process
        ran it; else (a saga loaded from the store has no live services) with the positional
        arguments given here and those keyword arguments its signature names, so
        ``compensate_all(payment_service=p, shipment_service=s)`` serves compensations that
        need different services. Keyword arguments given here override the services given
        by :meth:`provide_services` (or by the saga repository's ``services=``), which
        otherwise let a bare ``compensate_all()`` serve a loaded saga. Each one that
        returns is recorded as ``{"step": <compensation>, "status": "compensated",
        "compensates": <step>}`` and its step is marked ``compensated``, so calling this
        again after a failure resumes with the steps still to undo; a compensation that
        raises is recorded as ``"compensation_failed"`` and its error propagates.
        Returns the names of the compensations run.
        """
        self.status = SagaStatus.COMPENSATING
        remembered = self._step_arguments()
        kwargs = {**self._private().get("_saga_services", {}), **kwargs}
        ran: list[str] = []
        for entry in reversed(self.step_history):
            compensation = entry.get("compensation")
            if entry.get("status") != "completed" or not compensation or entry.get("compensated"):
                continue
            step = entry["step"]
            method = getattr(self, compensation, None)
            if not callable(method):
                raise SagaCompensationError(
                    f"{type(self).__name__}.{compensation} (the compensation of step {step!r}) does not exist; "
                    "define it or correct the name given to @saga_step(compensation=...)"
                )
            call_args, call_kwargs = remembered.get(step) or (args, _accepted(method, kwargs))
            try:
                inspect.signature(method).bind(*call_args, **call_kwargs)
            except TypeError as exc:
                raise SagaCompensationError(
                    f"compensation {compensation!r} of step {step!r} cannot be called with the arguments "
                    f"available ({exc}): pass them to compensate_all(...), or give the saga repository "
                    "services={...} so the sagas it loads have them"
                ) from None
            try:
                result = method(*call_args, **call_kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.record_step(compensation, status="compensation_failed", compensates=step, error=str(exc))
                raise
            entry["compensated"] = True
            self.record_step(compensation, status="compensated", compensates=step)
            ran.append(compensation)
        return ran

    def suspend(self, reason: str, timeout_at: datetime | None = None) -> None:
        self.status = SagaStatus.SUSPENDED
        self.suspension_reason = reason
        self.suspended_at = utc_now()
        self.timeout_at = timeout_at
        self._touch()

    def resume(self) -> None:
        self.status = SagaStatus.RUNNING
        self.suspension_reason = None
        self.suspended_at = None
        self.timeout_at = None
        self._touch()

    def mark_as_completed(self) -> None:
        self.status = SagaStatus.COMPLETED
        self.completed_at = utc_now()
        self._touch()

    def mark_as_failed(self, error: str) -> None:
        self.status = SagaStatus.FAILED
        self.error = error
        self._touch()

    def mark_as_cancelled(self, reason: str) -> None:
        self.status = SagaStatus.CANCELLED
        self.error = reason
        self._touch()
