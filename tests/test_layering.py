"""The architecture rules that keep the two stages separable."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _imports(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path] = names
    return found


def test_had_cache_never_imports_had_train() -> None:
    for path, names in _imports("had_cache").items():
        assert not any(n.split(".")[0] == "had_train" for n in names), path


def test_only_the_reader_opens_stores() -> None:
    for package in ("had_cache", "had_train"):
        for path, names in _imports(package).items():
            if "zarr" in names and path.name not in {"reader.py", "writer.py"}:
                raise AssertionError(f"{path} imports zarr; go through had_cache.reader")


def test_student_model_package_is_self_contained() -> None:
    """had_train/model exports as is: it may use had_train.ops, nothing else of the project."""
    for path, names in _imports("had_train/model").items():
        own = {n for n in names if n.split(".")[0] in {"had_cache", "had_train"}}
        assert own <= {"had_train.ops"}, (path, own)
