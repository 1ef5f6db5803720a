#!/usr/bin/env bash
# Runs threadbox on the embedded default (local kernels, local store; no cluster, MinIO or Slack).
# Installs what it needs on first use. Extra arguments go to `threadbox dev` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The address `threadbox dev` will serve on: its --host/--port arguments, else THREADBOX_*.
address() {
  local host="${THREADBOX_HOST:-127.0.0.1}" port="${THREADBOX_PORT:-8600}"
  while (($#)); do
    case "$1" in
      --host) host="${2:-$host}"; shift ;;
      --host=*) host="${1#--host=}" ;;
      --port) port="${2:-$port}"; shift ;;
      --port=*) port="${1#--port=}" ;;
    esac
    shift
  done
  echo "http://$host:$port"
}

URL="$(address "$@")"
ensure_uv
sync_env
uv_for_the_user
step "providing bubblewrap, which sandboxes each thread's kernel"
# Exit 3 means "not here": threadbox dev then runs kernels unsandboxed on loopback and says so.
"$ROOT/hack/install-bwrap.sh" >/dev/null || [[ $? -eq 3 ]]
step "starting threadbox dev: open the console link it prints, $URL/#token=... (Ctrl-C stops it)"
step "then, in another terminal: uv run threadbox run -t demo 'print(1)'"
command -v uv >/dev/null 2>&1 || printf '    (first: export PATH="%s:$PATH")\n' "$(user_bin)" >&2
[[ "$URL" == "http://127.0.0.1:8600" ]] || printf '    (first: export THREADBOX_SERVER=%s)\n' "$URL" >&2
cd "$ROOT"
exec "${UV[@]}" run --frozen threadbox dev "$@"
