"""The type stub of the native module matches the module and the pure twins."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import cqrs_ddd_persistence_mongo
from cqrs_ddd_persistence_mongo import _accel

STUB = Path(cqrs_ddd_persistence_mongo.__file__).with_name("_native.pyi")


def _params(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]


def _stub_functions() -> dict[str, list[str]]:
    """Each stub function's parameters; for a class, its constructor's (without cls)."""
    tree = ast.parse(STUB.read_text())
    found = {node.name: _params(node) for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            new = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__new__")
            found[node.name] = _params(new)[1:]
    return found


def _stub_methods() -> dict[str, dict[str, list[str]]]:
    """Each stub class's public methods and their parameters (without self)."""
    tree = ast.parse(STUB.read_text())
    return {
        node.name: {f.name: _params(f)[1:] for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def test_stub_classes_match_the_pure_twins_and_the_native_module() -> None:
    for name, methods in _stub_methods().items():
        pure = _accel.pure_twin(name)
        native = _accel.native_function(name)
        for method, params in methods.items():
            assert list(inspect.signature(getattr(pure, method)).parameters)[1:] == params, f"{name}.{method}"
            if native is not None:
                assert callable(getattr(native, method, None)), f"native {name} has no {method}"


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
