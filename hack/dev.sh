#!/usr/bin/env bash
# Runs threadbox on the embedded default (local kernels, local store; no cluster, MinIO or Slack).
# Installs what it needs on first use. Extra arguments go to `threadbox dev` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_uv
sync_env
step "providing bubblewrap, which sandboxes each thread's kernel"
# Exit 3 means "not here": threadbox dev then runs kernels unsandboxed on loopback and says so.
"$ROOT/hack/install-bwrap.sh" >/dev/null || [[ $? -eq 3 ]]
step "starting threadbox dev: open the console link it prints, http://127.0.0.1:8600/#token=... (Ctrl-C stops it)"
cd "$ROOT"
exec "${UV[@]}" run --frozen threadbox dev "$@"
