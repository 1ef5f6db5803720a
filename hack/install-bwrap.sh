#!/usr/bin/env bash
# Provides bubblewrap (Debian's `bubblewrap` package), which sandboxes local kernels.
# Installs it with apt-get when missing and this user is root; prints the bwrap path on stdout.
# Exit 3 with one line "SKIPPED: bubblewrap: <reason>" when this machine cannot provide it
# (threadbox then runs local kernels unsandboxed, on loopback only, and says so).
set -euo pipefail
skip() {
  echo "SKIPPED: bubblewrap: $*" >&2
  exit 3
}
if ! command -v bwrap >/dev/null; then
  command -v apt-get >/dev/null || skip "bwrap is not installed and apt-get is not available"
  [[ $(id -u) -eq 0 ]] || skip "bwrap is not installed; run: sudo apt-get install bubblewrap"
  echo "install-bwrap: apt-get install bubblewrap" >&2
  if ! apt-get install -y -q bubblewrap >&2; then
    apt-get update -q >&2 || true
    apt-get install -y -q bubblewrap >&2 || skip "apt-get install bubblewrap failed"
  fi
fi
# A namespace check, so a machine that forbids them says so here rather than at the first turn.
bwrap --unshare-pid --unshare-net --ro-bind / / true 2>/dev/null \
  || bwrap --unshare-user --unshare-pid --unshare-net --ro-bind / / true 2>/dev/null \
  || skip "bwrap is installed but cannot create namespaces here"
command -v bwrap
