#!/usr/bin/env bash
# Installs what tests/integration/test_console_browser.py needs: Debian's chromium and
# chromium-driver (apt; playwright's own browser download fails on these machines), and
# playwright-core in tests/browser (npm ci from the committed lock, cached under
# ~/.cache/threadbox/npm). Idempotent: a second run changes nothing and takes no time.
# Exit 3 means "this machine cannot provide a browser"; the test then skips loudly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BROWSER_DIR="$ROOT/tests/browser"
CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}"
STAMP="$BROWSER_DIR/node_modules/.threadbox-lock.sha256"

cannot() { echo "SKIPPED: chromium: $*" >&2; exit 3; }

install_chromium() {
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return
  command -v apt-get >/dev/null || cannot "no apt-get here to install Debian's chromium"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || cannot "installing chromium needs root, and sudo is missing"
    sudo=(sudo -n)
  fi
  echo "install-browser: installing chromium and chromium-driver with apt..." >&2
  "${sudo[@]}" apt-get update -qq >&2 || cannot "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >&2 \
    || cannot "apt-get install chromium chromium-driver failed"
}

# Keyed on the lock's hash, so a changed lock reinstalls and an unchanged one costs nothing.
install_node_deps() {
  command -v npm >/dev/null || cannot "npm is not on PATH"
  local want
  want="$(sha256sum "$BROWSER_DIR/package-lock.json" | cut -d' ' -f1)"
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && return
  echo "install-browser: npm ci in tests/browser..." >&2
  (cd "$BROWSER_DIR" && npm ci --cache "$CACHE/npm" --prefer-offline --no-audit --no-fund >&2) \
    || cannot "npm ci failed in tests/browser"
  echo "$want" >"$STAMP"
}

install_chromium
install_node_deps
echo "install-browser: ready: $(/usr/bin/chromium --version 2>/dev/null), playwright-core $(node -p 'require("'"$BROWSER_DIR"'/node_modules/playwright-core/package.json").version')" >&2
