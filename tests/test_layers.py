"""The hub's layers, read from its imports (ast, nothing is run): the HTTP API (``hub.api``) is
imported only by the app factory (``hub.app``) and itself; the hub never imports the gateway's
package (``agent``); no module imports a private module (``_name``) of another package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import hub

HUB = Path(hub.__file__).resolve().parent
ROOT = HUB.parent
API_USERS = {"hub.app"}  # the app factory puts the API in front of the composed services


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (``from a import b`` names both ``a`` and ``a.b``)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or module_name(path)).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def hub_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(HUB.rglob("*.py")):
        if "migrations" not in path.relative_to(HUB).parts:
            yield module_name(path), path


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_only_the_app_factory_imports_the_api() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, path in hub_modules()
        if not within(name, "hub.api") and name not in API_USERS
        for target in imports(path)
        if within(target, "hub.api")
    )
    assert bad == []


def test_the_hub_never_imports_the_agent() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, path in hub_modules()
        for target in imports(path)
        if within(target, "agent")
    )
    assert bad == []


def test_no_private_module_of_another_package() -> None:
    bad = []
    for name, path in hub_modules():
        home = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for target in imports(path):
            parts = target.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if part.startswith("_") and not part.startswith("__") and owner != home:
                    bad.append(f"{name} imports {'.'.join(parts[: i + 1])}")
                    break
    assert sorted(set(bad)) == []
