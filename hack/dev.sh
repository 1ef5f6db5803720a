#!/usr/bin/env bash
# Runs threadbox on the embedded default (local kernels, local store; no cluster, MinIO or Slack).
# Installs what it needs on first use. Extra arguments go to `threadbox dev` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_uv
sync_env
step "starting threadbox dev: open http://127.0.0.1:8600 (Ctrl-C stops it)"
cd "$ROOT"
exec "${UV[@]}" run --frozen threadbox dev "$@"
