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

# The README runs `uv run threadbox ...` in another terminal, so `uv` must be a command there,
# not only `python3 -m uv` here.
uv_for_the_user() {
  command -v uv >/dev/null 2>&1 && return
  local bin
  bin="$(python3 -m site --user-base)/bin"
  if [[ ! -x "$bin/uv" ]]; then
    step "installing the uv command into $bin"
    python3 -m pip install --quiet --user uv 2>/dev/null ||
      python3 -m pip install --quiet --user --break-system-packages uv
  fi
  step "uv is in $bin, which is not on your PATH yet; in the terminal where you run threadbox:"
  printf '    export PATH="%s:$PATH"\n' "$bin" >&2
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
[[ "$URL" == "http://127.0.0.1:8600" ]] || printf '    (first: export THREADBOX_SERVER=%s)\n' "$URL" >&2
cd "$ROOT"
exec "${UV[@]}" run --frozen threadbox dev "$@"
