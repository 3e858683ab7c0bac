"""Dependencies point one way: schemas <- models <- sim <- datasets <- viz <- pipelines, operators <- astra.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower layers first. A package may import its own modules and those of lower layers only; pipelines and
# operators share a layer and import neither each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("schemas",),
    ("models",),
    ("sim",),
    ("datasets",),
    ("viz",),
    ("pipelines", "operators"),
    ("astra",),
)
LAYER_OF = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def imported_packages(path: Path, packages: Collection[str] = LAYER_OF) -> set[tuple[str, int]]:
    """(package, line) of every import of one of `packages` (default: ours) in a source file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in packages}
    return found


def wrong_way_imports(root: Path) -> list[str]:
    """`file:line: importer -> imported` for every import that points up or sideways."""
    wrong = []
    for package, rank in LAYER_OF.items():
        for path in sorted((root / package).rglob("*.py")):
            for imported, line in sorted(imported_packages(path)):
                if imported != package and LAYER_OF[imported] >= rank:
                    wrong.append(f"{path.relative_to(root)}:{line}: {package} -> {imported}")
    return wrong


def test_every_import_points_down_the_layers() -> None:
    assert wrong_way_imports(ROOT) == []


def test_only_the_simulator_imports_mujoco() -> None:
    """`sim/__init__.py` picks MuJoCo's rendering backend; an import of mujoco from elsewhere could come first."""
    elsewhere = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in LAYER_OF
        if package != "sim"
        for path in sorted((ROOT / package).rglob("*.py"))
        for _, line in imported_packages(path, {"mujoco"})
    ]
    assert elsewhere == []


@pytest.mark.parametrize(
    ("package", "source", "wrong"),
    [
        ("models", "from sim.simulator import Simulator\n", True),
        ("sim", "def f():\n    import datasets.lake\n", True),  # a lazy import still counts
        ("pipelines", "from operators import config\n", True),  # siblings
        ("schemas", "import astra\n", True),
        ("viz", "from datasets.lake import Lake\nimport numpy\n", False),
    ],
)
def test_the_check_sees_a_wrong_import(tmp_path: Path, package: str, source: str, wrong: bool) -> None:
    for name in LAYER_OF:
        (tmp_path / name).mkdir()
    (tmp_path / package / "module.py").write_text(source)
    assert bool(wrong_way_imports(tmp_path)) == wrong
