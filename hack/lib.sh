# Shared by hack/dev.sh and hack/test.sh: make sure uv exists and the project env is synced.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export THREADBOX_CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}"

step() { printf '\n==> %s\n' "$*" >&2; }

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then UV=(uv); return; fi
  if ! python3 -m uv --version >/dev/null 2>&1; then
    step "installing uv (the Python package manager) with pip"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  fi
  UV=(python3 -m uv)
}

sync_env() {
  step "syncing the controller's environment (uv sync, from the committed uv.lock)"
  (cd "$ROOT" && "${UV[@]}" sync --frozen --all-extras --quiet)
  step "building the lean sandbox environment that kernels run from (cached)"
  (cd "$ROOT" && "${UV[@]}" run --frozen threadbox sandbox-env >/dev/null)
}
