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

step "pytest"
rc=0
"${UV[@]}" run --frozen pytest -q -rs --durations=15 "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure of the suite itself" >&2
  exit 1
fi
exit $rc
