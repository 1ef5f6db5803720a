#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what it needs (cached under
# ~/.cache/threadbox), lints, then runs unit, integration, browser and cluster tests against
# real kernels, a real MinIO, a real Chromium and a real single-node Kubernetes. A component this machine cannot provide is
# reported with one loud "SKIPPED: <component>: <reason>" line; our own failures fail the run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Runs an installer; exit 3 means "cannot be provided here": print its SKIPPED line and go on.
provide() {
  local name=$1; shift
  step "providing $name"
  local rc=0
  "$@" >/dev/null || rc=$?
  if [[ $rc -eq 3 ]]; then echo "(tests needing $name will be skipped, see the SKIPPED line above)" >&2; return 0; fi
  return $rc
}

ensure_uv
sync_env
step "lint: ruff, formatting, mypy (strict)"
"${UV[@]}" run --frozen ruff check controller devkit tests bench sandbox-image
"${UV[@]}" run --frozen ruff format --check controller devkit tests bench sandbox-image
"${UV[@]}" run --frozen mypy

provide bubblewrap ./hack/install-bwrap.sh
provide minio ./hack/install-minio.sh
provide chromium ./hack/install-browser.sh
provide prometheus ./hack/install-prometheus.sh
# The cluster tests would do these themselves; doing them here shows their progress.
# A cold cluster build takes most of an hour on 2 cores; cached, `up` takes about a minute.
if [[ " $* " != *"not cluster"* ]]; then
  provide kubernetes-cluster ./hack/cluster/up
  provide sandbox-image ./hack/build-sandbox-image.sh
  provide controller-image ./hack/build-controller-image.sh
fi

# kind + skaffold (tests/kind, README "Testing locally on kind"): the whole suite only. Cold,
# its build (kind, skaffold, a node image) is about 15 minutes of CPU: it runs at the lowest CPU
# and I/O priority while pytest runs, and its test after pytest, alone on the machine.
kind_pid=
if [[ $# -eq 0 ]]; then
  kind_log=$(mktemp /tmp/threadbox-kind-prepare.XXXXXX.log)
  step "kind + skaffold: preparing in the background at nice 19 (hack/kind/up --prepare; log $kind_log)"
  nice -n 19 ionice -c3 ./hack/kind/up --prepare >/dev/null 2>"$kind_log" &
  kind_pid=$!
  set -- -m "not kind"
fi

step "pytest"
rc=0
"${UV[@]}" run --frozen pytest -q -rs --durations=15 "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure of the suite itself" >&2
  exit 1
fi
[[ -n $kind_pid ]] || exit $rc

step "kind + skaffold: waiting for the preparation (log $kind_log)"
krc=0
wait "$kind_pid" || krc=$?
grep -E 'done in|prepared' "$kind_log" >&2 || true
if [[ $krc -eq 3 ]]; then
  grep -m1 '^SKIPPED: kind:' "$kind_log" >&2 || echo "SKIPPED: kind: hack/kind/up --prepare cannot run here (see $kind_log)" >&2
  exit $rc
fi
if [[ $krc -ne 0 ]]; then
  tail -n 40 "$kind_log" >&2
  echo "hack/kind/up --prepare failed ($krc)" >&2
  exit 1
fi
step "pytest -m kind tests/kind (kind cluster, skaffold run, skaffold dev, Ctrl-C)"
"${UV[@]}" run --frozen pytest -q -rs -m kind tests/kind || rc=$?
exit $rc
