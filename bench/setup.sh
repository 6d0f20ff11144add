#!/usr/bin/env bash
# Installs the peers the benchmarks compare against: task-spooler (tsp), nq, redis-server
# (Debian) and rq (PyPI, into .venv). Not part of the test path; `python -m bench` runs it
# when a peer is missing. Needs root for apt-get (skipped, with a warning, otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v tsp >/dev/null || missing+=(task-spooler)
command -v nq >/dev/null || missing+=(nq)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
        # The Debian package starts a system redis; the benchmark runs its own private one.
        if command -v systemctl >/dev/null && systemctl is-active -q redis-server 2>/dev/null; then
            systemctl stop redis-server || true
        fi
    else
        echo "bench/setup.sh: not root; cannot apt-get install ${missing[*]} (those peers will be skipped)" >&2
    fi
fi

PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -c "import rq" 2>/dev/null || "$PY" -m pip install -q "rq>=1.16"
