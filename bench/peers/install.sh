#!/usr/bin/env bash
# Install the peer servers' packages for chat-bench's comparison, into
# gitignored folders under bench/peers/ (nothing downloaded is committed):
#   node/node_modules  ws, pinned in node/package.json          (npm)
#   uws/node_modules   uWebSockets.js (the prebuilt µWebSockets core, npm
#                      @trufflesuite/uws-js-unofficial), pinned in
#                      uws/package.json                           (npm)
#   .venv              websockets, django, channels, daphne,
#                      pinned in python/ and django/requirements.txt (pip)
# Idempotent: a peer whose pinned packages are already there is skipped.
# Each peer is installed on its own; one that fails is reported and the
# others still install. Exit status: 0 if every peer installed, 1 otherwise.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
status=0

say() { printf 'install.sh: %s\n' "$*" >&2; }

# install_npm DIR PACKAGE: npm install in DIR unless node_modules/PACKAGE
# already has the version pinned in DIR/package.json.
install_npm() {
    local dir="$here/$1" package="$2"
    if ! command -v npm >/dev/null 2>&1; then
        say "$1: npm not found; skipping"
        return 1
    fi
    local want have
    want="$(sed -n "s/.*\"$package\": *\"\(npm:[^\"]*@\)\{0,1\}\([^\"]*\)\".*/\2/p" "$dir/package.json")"
    have="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$dir/node_modules/$package/package.json" 2>/dev/null | head -n1)"
    if [[ -n "$want" && "$want" == "$have" ]]; then
        say "$1: $package $have already installed"
        return 0
    fi
    say "$1: npm install ($package $want)"
    (cd "$dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
}

install_python() {
    local venv="$here/.venv"
    if [[ ! -x "$venv/bin/python" ]]; then
        say "python: creating venv $venv"
        python3 -m venv "$venv" || return 1
    fi
    if "$venv/bin/python" - "$here/python/requirements.txt" "$here/django/requirements.txt" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, want = line.split("==")
        try:
            if version(name) != want:
                sys.exit(1)
        except PackageNotFoundError:
            sys.exit(1)
PY
    then
        say "python: websockets, django, channels, daphne already installed"
        return 0
    fi
    say "python: pip install websockets, django, channels, daphne"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/python/requirements.txt" -r "$here/django/requirements.txt"
}

install_npm node ws || { say "node: FAILED"; status=1; }
install_npm uws uWebSockets.js || { say "uws: FAILED"; status=1; }
install_python || { say "python: FAILED"; status=1; }
exit "$status"
