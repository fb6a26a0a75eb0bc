"""llamalite/_core.pyi names every binding of csrc/bindings.cpp, and nothing that is not one."""
from __future__ import annotations

import ast
from pathlib import Path

import llamalite
from llamalite import _core


def stub_names() -> set[str]:
    tree = ast.parse((Path(llamalite.__file__).parent / "_core.pyi").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def stub_members(cls_name: str) -> set[str]:
    tree = ast.parse((Path(llamalite.__file__).parent / "_core.pyi").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name]
    return {n.name for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


def test_stub_matches_the_module():
    bound = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    assert stub_names() == bound


def test_stub_classes_list_their_methods_and_properties():
    for name in ("Model", "KVCache"):
        bound = {n for n in dir(getattr(_core, name)) if not n.startswith("_")}
        assert stub_members(name) == bound, name
