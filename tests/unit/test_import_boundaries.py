"""No module imports another part's private names (`_name`, or a module `_mod`).

A part is a package or module directly under `sorsync` or `api` (sorsync.sync, sorsync.config,
api.routes); inside a part private names are free. The layer contracts themselves are
import-linter's ([tool.importlinter] in pyproject.toml, run by .ci/run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sorsync", "api", "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module an ImportFrom names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports(path: Path, module: str | None = None) -> list[str]:
    """`importer: target` for each private name of another part that `path` imports."""
    module = module or module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node, module, path.name == "__init__.py")
            targets = [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] not in PACKAGES or part(target) == part(module):
                continue
            if any(is_private(name) for name in target.split(".")[1:]):
                found.append(f"{module}:{node.lineno}: {target}")
    return found


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    code = tmp_path / "load.py"
    code.write_text(
        "from sorsync.sync.run import _pg, execute\n"
        "from sorsync import __version__\n"
        "from . import _read\n"  # sorsync.files._read: its own part
        "import sorsync.krs._pgrows\n"
    )
    assert private_imports(code, "sorsync.files.load") == [
        "sorsync.files.load:1: sorsync.sync.run._pg",
        "sorsync.files.load:4: sorsync.krs._pgrows",
    ]


def test_no_module_imports_another_parts_private_names() -> None:
    paths = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(paths) > 50  # the walk found the code
    found = [hit for path in paths for hit in private_imports(path)]
    assert not found, "imports of another part's private names:\n" + "\n".join(found)
