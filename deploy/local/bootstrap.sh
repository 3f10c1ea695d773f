#!/usr/bin/env bash
# Make this checkout ready to run: Python venv with freshet installed, redis-server,
# Java and Maven (for the Kafka broker), Chromium and its driver (browser tests), and
# the Kafka jars cached.
#
# Safe to run again and again: each step is skipped when it is already done. It needs
# root only to apt-get install what is missing; it never prompts (CI has no stdin).
set -euo pipefail

cd "$(dirname "$0")/../.."
root_dir=$(pwd)
venv="$root_dir/.venv"
stamp="$venv/.freshet-installed"

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        die "missing $*; install as root: apt-get install $*"
    fi
    if [[ $apt_updated -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

python_ok() {
    "$1" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in python3.11 python3 python3.12; do
        if command -v "$candidate" >/dev/null && python_ok "$(command -v "$candidate")"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# --- system packages ------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v openssl >/dev/null || missing+=(openssl) # test certificates (TLS tests)
command -v chromium >/dev/null || missing+=(chromium)              # browser tests of the web view
command -v chromedriver >/dev/null || missing+=(chromium-driver) # Selenium drives it; nothing is downloaded
if [[ ! -x "$venv/bin/python" ]] && ! find_python >/dev/null; then
    missing+=(python3 python3-venv)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
fi

# --- virtualenv -------------------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
    python=$(find_python) || die "no Python 3.11 or 3.12 with venv found"
    log "creating $venv with $python ($("$python" --version))"
    if ! "$python" -m venv "$venv"; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip </dev/null
fi

# Installs come from the lock (requirements.lock, made by uv with hashes), so a fresh
# machine gets exactly the versions CI tested. `uv pip sync` also removes packages the
# lock does not name. Refresh the lock with `make lock-refresh`.
want=$(cat requirements.lock deploy/local/tools.lock pyproject.toml | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [[ "$want" != "$have" ]]; then
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # uv lives beside the venv's packages, not among them: the sync below removes
    # whatever the lock does not name.
    uv="$venv/tools/bin/uv"
    log "installing uv from deploy/local/tools.lock"
    "$venv/bin/python" -m pip install -q --require-hashes --upgrade --target "$venv/tools" \
        -r deploy/local/tools.lock </dev/null
    log "uv pip sync requirements.lock (the lock changed since the last install)"
    # --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE
    # set every process then compiles its imports again; a worker took 6.8 s instead of
    # 1.6 s from exec to consuming, which is most of its recovery after a crash.
    "$uv" pip sync -q --compile-bytecode --python "$venv/bin/python" --require-hashes \
        requirements.lock </dev/null
    "$uv" pip install -q --python "$venv/bin/python" --no-deps -e . </dev/null
    printf '%s\n' "$want" >"$stamp"
else
    log "Python dependencies match requirements.lock"
fi

# --- Kafka broker jars ------------------------------------------------------------------
"$venv/bin/freshet" services prepare </dev/null
log "ready"
