"""The type stub of the native module matches the module and the pure twins."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import cqrs_ddd_persistence_mongo
from cqrs_ddd_persistence_mongo import _accel

STUB = Path(cqrs_ddd_persistence_mongo.__file__).with_name("_native.pyi")


def _stub_functions() -> dict[str, list[str]]:
    tree = ast.parse(STUB.read_text())
    return {
        node.name: [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_stub_lists_exactly_the_switched_functions() -> None:
    assert set(_stub_functions()) == set(_accel._TWINS)


def test_stub_signatures_match_the_pure_twins() -> None:
    for name, params in _stub_functions().items():
        pure = list(inspect.signature(_accel.pure_twin(name)).parameters)
        assert params == pure, f"{name}: stub {params} != pure twin {pure}"


def test_native_module_has_every_stub_function() -> None:
    for name in _stub_functions():
        if _accel.native_function(name) is None:
            pytest.skip("native module not built")
        assert callable(_accel.native_function(name))
