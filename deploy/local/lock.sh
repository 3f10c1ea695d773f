#!/usr/bin/env bash
# Re-resolve requirements.lock (every extra, with hashes) from pyproject.toml's ranges.
# Without --upgrade it keeps the locked versions that still satisfy pyproject.toml and
# only resolves what changed; with --upgrade it takes the newest versions allowed.
# `make lock-refresh` runs this with --upgrade and then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv
uv="$venv/tools/bin/uv"
if [[ ! -x "$uv" ]]; then
    bash deploy/local/bootstrap.sh
fi
"$uv" pip compile -q pyproject.toml --extra train --extra bench --extra dev \
    --generate-hashes --universal --python-version 3.11 "$@" -o requirements.lock
"$uv" pip compile -q deploy/local/tools.in --generate-hashes --universal \
    --python-version 3.11 "$@" -o deploy/local/tools.lock
echo "requirements.lock refreshed; \`make bootstrap\` installs it"
