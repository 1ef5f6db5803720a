# Shared by hack/dev.sh and hack/test.sh: make sure uv exists and the project env is synced.
# Sourcing it runs nothing (tests/unit/test_dev_script.py calls its functions).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export THREADBOX_CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}"

step() { printf '\n==> %s\n' "$*" >&2; }

# Debian and Ubuntu mark their Python externally managed (PEP 668), so pip refuses even a --user
# install there unless told to go ahead. uv has no dependencies, so a user install of it replaces
# no system package.
pip_install_for_user() {
  python3 -m pip --version >/dev/null 2>&1 ||
    { echo "hack: python3 has no pip; install it first (Debian/Ubuntu: apt-get install python3-pip)" >&2; return 1; }
  python3 -m pip install --quiet --user "$@" 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages "$@"
}

# Where pip --user puts commands: ~/.local/bin unless PYTHONUSERBASE says otherwise.
user_bin() { echo "$(python3 -m site --user-base)/bin"; }

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then UV=(uv); return; fi
  if ! python3 -m uv --version >/dev/null 2>&1; then
    step "installing uv (the Python package manager) for this user with pip"
    pip_install_for_user uv
  fi
  UV=(python3 -m uv)
}

# The README runs `uv run threadbox ...` in another terminal, so `uv` must be a command there,
# not only `python3 -m uv` here: say what to add to PATH when pip put it off PATH.
uv_for_the_user() {
  command -v uv >/dev/null 2>&1 && return
  local bin
  bin="$(user_bin)"
  if [[ ! -x "$bin/uv" ]]; then
    step "installing the uv command into $bin"
    pip_install_for_user uv
  fi
  step "uv is in $bin, which is not on your PATH; in the terminal where you run threadbox:"
  printf '    export PATH="%s:$PATH"\n' "$bin" >&2
  # Debian's and Ubuntu's ~/.profile adds ~/.local/bin only at login, and only if it existed then.
  printf '  (or log in again, or add that line to ~/.bashrc to keep it)\n' >&2
}

sync_env() {
  step "syncing the controller's environment (uv sync, from the committed uv.lock)"
  (cd "$ROOT" && "${UV[@]}" sync --frozen --all-extras --quiet)
  step "building the lean sandbox environment that kernels run from (cached)"
  (cd "$ROOT" && "${UV[@]}" run --frozen threadbox sandbox-env >/dev/null)
}
