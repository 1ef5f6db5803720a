# shellcheck shell=bash
# Shared by hack/build-{sandbox,controller}-image.sh: build an image with buildah, tagged by a
# hash of its inputs, and import it into the cluster's containerd (k8s.io). Sourced, not executed.
# The caller sets COMPONENT (for messages and the lock), IMAGE (repository), DOCKERFILE, BASE,
# optionally BUILD_ARGS (part of the tag) and BUILD_NOTE, and calls image_build_and_import with
# the list of input files (relative to $ROOT).
#   NO_IMPORT=1   build only (no containerd needed)
#   FORCE=1       rebuild even when cached
# Prints the image reference on stdout; progress on stderr. Exit 3 with one line
# "SKIPPED: $COMPONENT: <reason>" when this machine cannot build or import images.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BASE_IMAGE, BIN_DIR, CONTAINERD_SOCK: the cluster scripts' names for the same things.
source "$ROOT/hack/cluster/lib.sh"

T0=$SECONDS
say() { printf '[%s %4ss] %s\n' "$COMPONENT" "$((SECONDS - T0))" "$*" >&2; }
skip() {
  echo "SKIPPED: $COMPONENT: $*" >&2
  exit 3
}
ctr_() { "$BIN_DIR/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
# grep reads to the end: with -q it would exit at the first match and, under pipefail, ctr's
# SIGPIPE would turn a found image into a missing one.
in_containerd() { ctr_ images ls -q 2>/dev/null | grep -xF "$1" >/dev/null; }
in_buildah() { buildah inspect --type image "$1" >/dev/null 2>&1; }
tag_dev() { ctr_ images tag --force "$1" "$IMAGE:dev" >/dev/null 2>&1 || { echo "ctr images tag $IMAGE:dev failed" >&2; exit 1; }; }

# Checks that can skip, then the per-image lock: the tests and a person may both build at once.
image_preflight() {
  [[ $(id -u) == 0 ]] || skip "must run as root (buildah and containerd need it on this machine)"
  exec 9>"/tmp/threadbox-$COMPONENT.lock"
  if ! flock -n 9; then
    say "another build of $IMAGE is running; waiting for it"
    flock 9
  fi
  command -v buildah >/dev/null || skip "buildah is not installed (hack/cluster/build installs it)"
  if [[ ${NO_IMPORT:-0} != 1 ]]; then
    [[ -x $BIN_DIR/ctr ]] || skip "containerd's ctr is missing at $BIN_DIR/ctr (hack/cluster/up builds and starts it)"
    ctr_ version >/dev/null 2>&1 || skip "containerd is not running at $CONTAINERD_SOCK (hack/cluster/up starts it)"
  fi
  base_id=$(buildah images --noheading --no-trunc --format '{{.ID}}' "$BASE" 2>/dev/null | head -n1 || true)
  if [[ -z $base_id && $BASE == localhost/* ]]; then
    skip "base image $BASE is not in buildah's storage (hack/cluster/build and up provide it)"
  fi
}

# image_build_and_import FILE... : the files are the whole build context and the whole tag, so
# nothing else (.venv, secrets) can reach the image and the tag cannot miss an input.
image_build_and_import() {
  local files=("$@") tag ref
  image_preflight
  tag=$(
    cd "$ROOT"
    for f in "${files[@]}"; do printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"; done
    echo "base $BASE ${base_id:-unresolved}"
    if [[ -n ${BUILD_ARGS+set} ]]; then echo "args ${BUILD_ARGS[*]}"; fi
  )
  tag=$(sha256sum <<<"$tag" | cut -c1-16)
  ref=$IMAGE:$tag

  if [[ ${FORCE:-0} != 1 && ${NO_IMPORT:-0} != 1 ]] && in_containerd "$ref"; then
    say "cached: $ref is already in containerd (k8s.io)"
    tag_dev "$ref"
    echo "$ref"
    return 0
  fi
  if [[ ${FORCE:-0} == 1 ]] || ! in_buildah "$ref"; then
    _image_build "$ref" "${files[@]}"
  else
    say "$ref is already built in buildah's storage"
    buildah tag "$ref" "$IMAGE:dev"
  fi
  if [[ ${NO_IMPORT:-0} == 1 ]]; then
    echo "$ref"
    return 0
  fi
  local t=$SECONDS
  say "importing $ref into containerd (k8s.io)"
  "$ROOT/hack/cluster/import-image" "$ref" >/dev/null
  tag_dev "$ref"
  say "imported in $((SECONDS - t))s; also tagged $IMAGE:dev"
  echo "$ref"
}

_image_build() {
  local ref=$1 args ca log_file t size
  shift
  IMAGE_CTX=$(mktemp -d "/tmp/threadbox-$COMPONENT-ctx.XXXXXX")
  trap 'rm -rf "$IMAGE_CTX"' EXIT
  (cd "$ROOT" && cp --parents "$@" "$IMAGE_CTX/")
  args=(--isolation chroot --network host --layers --build-arg "BASE=$BASE" -f "$IMAGE_CTX/$DOCKERFILE"
    -t "$ref" -t "$IMAGE:dev" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"})
  # An egress proxy's CA (if the host trusts one) for pip inside the build; a build secret,
  # so it is never stored in the image.
  for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [[ -s $ca ]]; then
      args+=(--secret "id=hostca,src=$ca")
      break
    fi
  done
  say "building $ref from $BASE ($# input files; ${BUILD_NOTE:-this takes minutes})"
  log_file=$(mktemp "/tmp/threadbox-$COMPONENT-build.XXXXXX.log")
  t=$SECONDS
  if ! buildah bud "${args[@]}" "$IMAGE_CTX" >"$log_file" 2>&1; then
    tail -n 40 "$log_file" >&2
    echo "$COMPONENT: buildah bud failed (full log: $log_file)" >&2
    exit 1
  fi
  size=$(buildah images --noheading --format '{{.Size}}' "$ref" 2>/dev/null | head -n1 || true)
  say "built $ref in $((SECONDS - t))s, size $size (log: $log_file)"
}
