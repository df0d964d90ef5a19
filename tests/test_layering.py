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


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_had_cache_never_imports_had_train() -> None:
    for path, names in _imports("had_cache").items():
        assert "had_train" not in _top(names), path


def test_had_common_imports_neither_stage() -> None:
    """The shared module sits below both stages, so either can be used without the other."""
    for path, names in _imports("had_common").items():
        assert not _top(names) & {"had_cache", "had_train"}, path


def test_only_the_reader_and_writer_import_zarr() -> None:
    for package in ("had_common", "had_cache", "had_train"):
        for path, names in _imports(package).items():
            if "zarr" in names and path.name not in {"reader.py", "writer.py"}:
                raise AssertionError(f"{path} imports zarr; go through had_cache.reader")


def test_had_train_opens_stores_only_through_its_data_module() -> None:
    """Stage two reads stores through one module (had_train/data.py) and one reader.

    The one exception: had_train/embed.py writes its output (a plain array group, not a store)
    through the writer's `ArrayGroupWriter`, so that zarr stays behind the reader and writer."""
    writes_array_groups = {ROOT / "had_train" / "embed.py"}
    for path, names in _imports("had_train").items():
        if path.name != "data.py":
            assert "had_cache.reader" not in names, path
            if path not in writes_array_groups:
                assert "had_cache.writer" not in names, path
    assert "had_cache.reader" in _imports("had_train")[ROOT / "had_train" / "data.py"]


def test_student_model_package_is_self_contained() -> None:
    """had_train/model exports as is: it may use had_train.ops, nothing else of the project."""
    for path, names in _imports("had_train/model").items():
        own = {n for n in names if n.split(".")[0] in {"had_cache", "had_train"}}
        assert own <= {"had_train.ops"}, (path, own)


def _cache_modules(path: Path) -> set[str]:
    """The had_cache modules a file imports, `from had_cache import teacher` included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "had_cache":
                found |= {f"had_cache.{alias.name}" for alias in node.names}
            elif node.module.startswith("had_cache."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("had_cache.")}
    return found


def test_pretraining_runs_a_teacher_only_in_its_online_module() -> None:
    """A store run never holds a teacher: in had_train only --online-teacher's module
    (online.py) and evaluation's teacher baselines load or gate one."""
    may_load = {"online.py", "baselines.py", "suite.py", "teacher_classifier.py"}
    for path in (ROOT / "had_train").rglob("*.py"):
        if _cache_modules(path) & {"had_cache.teacher", "had_cache.gate"}:
            assert path.name in may_load, path
    assert "had_cache.teacher" in _cache_modules(ROOT / "had_train" / "online.py")
