#!/usr/bin/env bash
# Bring a Debian/Ubuntu machine to the point where `make run` and `make test` work:
#   1. system packages (only the missing ones; apt-get runs only if something is missing),
#   2. the virtualenv .venv (created with the `python3` on PATH if missing),
#   3. matchd and its dev tools in .venv at the versions of requirements.lock
#      (only when setup.cfg or requirements.lock changed since the last install).
# Idempotent: a machine that has everything runs no apt-get and no pip.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.matchd-installed"
MIN_PYTHON=(3 11)

# Build tools and headers (mysqlclient compiles against libmysqlclient), and the
# services matchd talks to in tests and in production.
PACKAGES=(
    python3-venv
    python3-dev
    build-essential
    pkg-config
    default-libmysqlclient-dev
    mariadb-server
    redis-server
)

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

install_system_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        say "not a Debian/Ubuntu system: install the equivalents of ${PACKAGES[*]} yourself"
        return 0
    fi
    local missing=() package
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    for package in "${PACKAGES[@]}"; do
        installed "$package" || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        say "system packages: all present"
        return 0
    fi
    if ((EUID != 0)); then
        die "missing Debian packages: ${missing[*]}
    install them as root:  apt-get update && apt-get install -y ${missing[*]}
    (or run this script as root), then run it again"
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_python() {
    command -v python3 >/dev/null 2>&1 || die "no python3 on PATH"
    python3 -c "import sys; sys.exit(sys.version_info < (${MIN_PYTHON[0]}, ${MIN_PYTHON[1]}))" ||
        die "$(command -v python3) is Python $(python3 -c 'import platform; print(platform.python_version())'); matchd needs ${MIN_PYTHON[0]}.${MIN_PYTHON[1]} or newer first on PATH"
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    if [[ -e "$VENV" ]]; then
        say "$VENV is broken (its python does not run); recreating it"
        rm -rf "$VENV"
    fi
    say "creating $VENV with $(command -v python3) ($(python3 --version 2>&1))"
    python3 -m venv "$VENV"
}

install_python_packages() {
    [[ -f requirements.lock ]] || die "requirements.lock is missing"
    local want have=""
    want="$(cat setup.cfg requirements.lock | sha256sum | cut -d' ' -f1)"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" == "$have" ]]; then
        say "$VENV: up to date with setup.cfg and requirements.lock"
        return 0
    fi
    say "installing matchd and its dev tools into $VENV (pinned by requirements.lock)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    # pip itself first, at the locked version, then everything else.
    "$VENV/bin/python" -m pip install -q -c requirements.lock pip
    "$VENV/bin/python" -m pip install -q -c requirements.lock -e '.[dev]'
    printf '%s\n' "$want" >"$STAMP"
    say "$VENV: installed"
}

install_system_packages
check_python
ensure_venv
install_python_packages
