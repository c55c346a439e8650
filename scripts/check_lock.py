"""Checks that the venv holds exactly the locked versions of what riskengine[dev] needs.

Run by scripts/bootstrap.sh with the venv's Python after installing from the lock. It walks
the installed requirements of riskengine[dev] (markers evaluated here), plus pip and the build
requirements, and fails when one of them is missing from the lock or installed at another
version: pyproject.toml then asks for something the lock does not pin, and the lock needs a
refresh (bash scripts/lock.sh).
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def needed(root: Path) -> dict[str, str | None]:
    """Every distribution riskengine[dev] needs, with its installed version (None: absent)."""
    with (root / "pyproject.toml").open("rb") as f:
        build_requires = tomllib.load(f)["build-system"]["requires"]
    todo = [(Requirement(r), frozenset[str]()) for r in ["pip", *build_requires]]
    todo.append((Requirement("riskengine"), frozenset({"dev"})))
    found: dict[str, str | None] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        found[name] = dist.version
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is not None and not any(
                    sub.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                continue
            todo.append((sub, frozenset(sub.extras)))
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "requirements" / "dev.lock"
    pins = read_lock(lock)
    problems = []
    for name, version in sorted(needed(root).items()):
        if name == "riskengine":
            continue
        if version is None:
            problems.append(f"{name}: needed but not installed")
        elif name not in pins:
            problems.append(f"{name}=={version}: installed but not in the lock")
        elif pins[name] != version:
            problems.append(f"{name}=={version}: installed, the lock has {pins[name]}")
    if problems:
        print(f"{lock} does not match what pyproject.toml asks for:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("refresh it: bash scripts/lock.sh, then bash scripts/test.sh", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
