#!/usr/bin/env bash
# Refreshes requirements/dev.lock, the exact versions scripts/bootstrap.sh installs.
#
# Builds a throwaway venv, installs pip, the build requirements and riskengine[dev] from the
# ranges in pyproject.toml, and writes every installed package with its exact version (pip,
# setuptools and wheel included; riskengine itself left out). Packages the current lock pins
# keep their version (a new dependency does not move the others); `--upgrade` takes the newest
# release of everything that fits the ranges.
# The lock is for CPython 3.11 on Linux x86_64, the platform the tests and CI run on.
#
# A refreshed lock lands only after `bash scripts/test.sh` passes on it (CI installs from it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=requirements/dev.lock

target="$("$PY" -c 'import platform, sys
print(f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
      f" {platform.system()} {platform.machine()}")')"
if [ "$target" != "cpython 3.11 Linux x86_64" ]; then
    echo "lock.sh: the lock is written for CPython 3.11 on Linux x86_64, not $target" >&2
    echo "lock.sh: set PYTHON to a Python 3.11 interpreter" >&2
    exit 1
fi

keep=(-c "$LOCK")
if [ "${1:-}" = "--upgrade" ] || [ ! -f "$LOCK" ]; then
    keep=()
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
vpy="$tmp/venv/bin/python"
pip=("$vpy" -m pip --quiet)

"${pip[@]}" install --upgrade "${keep[@]}" pip
# The build requirements go into the venv too, so that their versions are recorded; the
# isolated build of riskengine is held to those same versions.
mapfile -t build_requires < <("$vpy" -c 'import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))')
"${pip[@]}" install --upgrade "${keep[@]}" "${build_requires[@]}"
"${pip[@]}" freeze --all > "$tmp/build.txt"
"${pip[@]}" install "${keep[@]}" --build-constraint "$tmp/build.txt" -e '.[dev]'
"${pip[@]}" check

{
    echo "# Exact versions of every package that \`pip install -e '.[dev]'\` installs"
    echo "# (with pip and the build requirements), for CPython 3.11 on Linux x86_64."
    echo "# Written by scripts/lock.sh from a fresh venv; do not edit by hand."
    echo "# scripts/bootstrap.sh installs from it: pip install -c requirements/dev.lock ..."
    echo "# Refresh: bash scripts/lock.sh, then bash scripts/test.sh must pass before it lands."
    "${pip[@]}" freeze --all --exclude-editable --exclude riskengine | LC_ALL=C sort -f -t= -k1,1
} > "$tmp/dev.lock"

if grep -v '^#' "$tmp/dev.lock" | grep -v -E '^[A-Za-z0-9._-]+==[A-Za-z0-9.!_-]+$'; then
    echo "lock.sh: the lines above are not plain name==version pins; lock not written" >&2
    exit 1
fi
mkdir -p "$(dirname "$LOCK")"
mv "$tmp/dev.lock" "$LOCK"
echo "wrote $LOCK ($(grep -c -v '^#' "$LOCK") packages); now run: bash scripts/test.sh" >&2
