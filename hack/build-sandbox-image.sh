#!/usr/bin/env bash
# Build the sandbox image with buildah and import it into the cluster's containerd (k8s.io).
#   hack/build-sandbox-image.sh           build if needed, tag :<hash> and :dev, import
#   NO_IMPORT=1 hack/build-sandbox-image.sh   build only (no containerd needed)
#   FORCE=1 hack/build-sandbox-image.sh       rebuild even when cached
#   BASE=python:3.12-slim ...                 another base (default: the cluster's debootstrap base)
# The tag is a hash of Dockerfile.sandbox, sandbox-image/ (minus README.md), the shipped
# controller modules and the base image's ID, so an image is built and imported once per change.
# Prints the image reference on stdout; progress on stderr. Exit 3 with one line
# "SKIPPED: sandbox-image: <reason>" when this machine cannot build or import images.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# BASE_IMAGE, BIN_DIR, CONTAINERD_SOCK: the cluster scripts' names for the same things.
source "$ROOT/hack/cluster/lib.sh"

IMAGE=localhost/threadbox-sandbox
BASE=${BASE:-$BASE_IMAGE}
MODULES=sandbox-image/threadbox_sandbox/controller-modules.txt
T0=$SECONDS
say() { printf '[sandbox-image %4ss] %s\n' "$((SECONDS - T0))" "$*" >&2; }
skip() {
  echo "SKIPPED: sandbox-image: $*" >&2
  exit 3
}

trap 'echo "hack/build-sandbox-image.sh: failed at line $LINENO" >&2' ERR

[[ $(id -u) == 0 ]] || skip "must run as root (buildah and containerd need it on this machine)"
# One build at a time: the e2e tests and a person may both run this for the same sources.
exec 9>/tmp/threadbox-sandbox-image.lock
if ! flock -n 9; then
  say "another build of the sandbox image is running; waiting for it"
  flock 9
fi
command -v buildah >/dev/null || skip "buildah is not installed (hack/cluster/build installs it)"
ctr_() { "$BIN_DIR/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
if [[ ${NO_IMPORT:-0} != 1 ]]; then
  [[ -x $BIN_DIR/ctr ]] || skip "containerd's ctr is missing at $BIN_DIR/ctr (hack/cluster/up builds and starts it)"
  ctr_ version >/dev/null 2>&1 || skip "containerd is not running at $CONTAINERD_SOCK (hack/cluster/up starts it)"
fi
base_id=$(buildah images --noheading --no-trunc --format '{{.ID}}' "$BASE" 2>/dev/null | head -n1 || true)
if [[ -z $base_id && $BASE == localhost/* ]]; then
  skip "base image $BASE is not in buildah's storage (hack/cluster/build and up provide it)"
fi

# The build context holds exactly the hashed inputs, so nothing else (.venv, secrets) can
# reach the image and the tag cannot miss an input.
inputs() {
  cd "$ROOT"
  {
    echo Dockerfile.sandbox
    find sandbox-image -type f ! -name README.md ! -name '*.pyc' ! -path '*/__pycache__/*'
    grep -v -e '^#' -e '^[[:space:]]*$' "$MODULES"
  } | LC_ALL=C sort -u
}
mapfile -t files < <(inputs)
tag=$(
  cd "$ROOT"
  for f in "${files[@]}"; do printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"; done
  echo "base $BASE ${base_id:-unresolved}"
)
tag=$(sha256sum <<<"$tag" | cut -c1-16)
ref=$IMAGE:$tag

in_containerd() { ctr_ images ls -q 2>/dev/null | grep -qxF "$1"; }
in_buildah() { buildah inspect --type image "$1" >/dev/null 2>&1; }

if [[ ${FORCE:-0} != 1 && ${NO_IMPORT:-0} != 1 ]] && in_containerd "$ref"; then
  say "cached: $ref is already in containerd (k8s.io)"
  ctr_ images tag --force "$ref" "$IMAGE:dev" >/dev/null 2>&1 || { echo "ctr images tag $IMAGE:dev failed" >&2; exit 1; }
  echo "$ref"
  exit 0
fi

if [[ ${FORCE:-0} == 1 ]] || ! in_buildah "$ref"; then
  ctx=$(mktemp -d /tmp/threadbox-sandbox-ctx.XXXXXX)
  trap 'rm -rf "$ctx"' EXIT
  (cd "$ROOT" && cp --parents "${files[@]}" "$ctx/")
  args=(--isolation chroot --network host --layers --build-arg "BASE=$BASE" -f "$ctx/Dockerfile.sandbox"
    -t "$ref" -t "$IMAGE:dev")
  # An egress proxy's CA (if the host trusts one) for pip inside the build; a build secret,
  # so it is never stored in the image.
  for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [[ -s $ca ]]; then
      args+=(--secret "id=hostca,src=$ca")
      break
    fi
  done
  say "building $ref from $BASE (${#files[@]} input files; pip install of the data stack takes minutes)"
  log_file=$(mktemp /tmp/threadbox-sandbox-build.XXXXXX.log)
  t=$SECONDS
  if ! buildah bud "${args[@]}" "$ctx" >"$log_file" 2>&1; then
    tail -n 40 "$log_file" >&2
    echo "hack/build-sandbox-image.sh: buildah bud failed (full log: $log_file)" >&2
    exit 1
  fi
  size=$(buildah images --noheading --format '{{.Size}}' "$ref" 2>/dev/null | head -n1 || true)
  say "built $ref in $((SECONDS - t))s, size $size (log: $log_file)"
else
  say "$ref is already built in buildah's storage"
  buildah tag "$ref" "$IMAGE:dev"
fi

if [[ ${NO_IMPORT:-0} == 1 ]]; then
  echo "$ref"
  exit 0
fi
t=$SECONDS
say "importing $ref into containerd (k8s.io)"
"$ROOT/hack/cluster/import-image" "$ref" >/dev/null
ctr_ images tag --force "$ref" "$IMAGE:dev" >/dev/null 2>&1 || { echo "ctr images tag $IMAGE:dev failed" >&2; exit 1; }
say "imported in $((SECONDS - t))s; also tagged $IMAGE:dev"
echo "$ref"
