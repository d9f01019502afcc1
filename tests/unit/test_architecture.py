"""The layering the brief promises, checked on the source: `shared/` and the level packages never
import the CLI package, nothing reads state through the old SQLite-only helpers, and no product
function is over 60 lines."""

from __future__ import annotations

import ast
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("shared", "level0_notebook", "level1_devops", "level2_training", "level3_deployment",
           "level4_automation")  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PRODUCT)
def test_product_packages_do_not_import_the_cli_package(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "taxi_mlops"
        )
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_opens_sqlite_itself() -> None:
    """Operational state goes through shared.statedb (one code path for SQLite and PostgreSQL):
    only that package talks to the SQLite driver (its hot-path INSERT, its checkpoints)."""
    statedb = ROOT / "shared" / "statedb"
    users = [
        str(path.relative_to(ROOT))
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        if "sqlite3" in imported_modules(path) and statedb not in path.parents
    ]
    assert users == []


def test_every_migration_file_ships_in_the_wheel() -> None:
    """The migrations folder is not a package: its files are package data, listed by pattern."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["shared"]
    folder = ROOT / "shared" / "statedb" / "migrations"
    files = [p.relative_to(ROOT / "shared").as_posix() for p in folder.rglob("*") if p.is_file()
             and "__pycache__" not in p.parts]  # fmt: skip
    assert files and [f for f in files if not any(fnmatch(f, pat) for pat in patterns)] == []


#: the brief's limit: a function longer than this does more than one job
MAX_FUNCTION_LINES = 60


def test_no_product_function_is_over_the_limit() -> None:
    """Counted from ``def`` to the function's last line (docstring included, decorators not)."""
    long = {}
    for package in (*PRODUCT, "taxi_mlops"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}


#: each floor, and the floors below it that it may import (ARCHITECTURE.md)
FLOORS = {
    "shared": set(),
    "level1_devops": {"shared"},
    "level2_training": {"shared"},
    "level3_deployment": {"shared", "level1_devops", "level2_training"},
    "level4_automation": {"shared", "level1_devops", "level2_training", "level3_deployment"},
}
FLOORS["taxi_mlops"] = {*FLOORS["level4_automation"], "level4_automation"}


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_each_floor_imports_only_the_floors_below_it(package: str) -> None:
    """shared -> levels (each may use the ones below it) -> the CLI; never upwards."""
    allowed = FLOORS[package] | {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in FLOORS.keys() - allowed
        )
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
