#!/usr/bin/env bash
# Builds the MinIO server and mc from the Go module proxy, cached under
# ~/.cache/threadbox/minio/<version>/ so a second run costs nothing.
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail

# Upstream's commit of 2026-02-12 (its last when chosen), after RELEASE.2025-10-15T17-29-55Z:
# it has the fix of GHSA-jjjj-jwhf-8rgr (cmd/iam.go checks session policies with DenyOnly false).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
MC_VERSION="${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}"
CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}"
BIN="$CACHE/minio/minio-$MINIO_VERSION-mc-$MC_VERSION"

if [[ -x "$BIN/minio" && -x "$BIN/mc" ]]; then
  echo "$BIN"
  exit 0
fi
# Exit 3 means "this machine cannot provide MinIO": the test runner turns it into a loud SKIPPED.
command -v go >/dev/null || { echo "SKIPPED: minio: go is not on PATH" >&2; exit 3; }
if ! go list -m "github.com/minio/minio@$MINIO_VERSION" >/dev/null 2>&1; then
  echo "SKIPPED: minio: the Go module proxy cannot serve github.com/minio/minio@$MINIO_VERSION" >&2
  exit 3
fi
mkdir -p "$BIN.tmp"
for spec in "github.com/minio/minio@$MINIO_VERSION" "github.com/minio/mc@$MC_VERSION"; do
  echo "install-minio: building $spec (several minutes on a cold cache)..." >&2
  start=$(date +%s)
  GOBIN="$BIN.tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install "$spec" >&2
  echo "install-minio: built $spec in $(( $(date +%s) - start ))s" >&2
done
rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
