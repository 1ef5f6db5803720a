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
COMPONENT=sandbox-image
source "$(dirname "$0")/image-lib.sh"
trap 'echo "hack/build-sandbox-image.sh: failed at line $LINENO" >&2' ERR

IMAGE=localhost/threadbox-sandbox
DOCKERFILE=Dockerfile.sandbox
BASE=${BASE:-$BASE_IMAGE}
BUILD_NOTE="pip install of the data stack takes minutes"
MODULES=sandbox-image/threadbox_sandbox/controller-modules.txt

inputs() {
  cd "$ROOT"
  {
    echo "$DOCKERFILE"
    find sandbox-image -type f ! -name README.md ! -name '*.pyc' ! -path '*/__pycache__/*'
    grep -v -e '^#' -e '^[[:space:]]*$' "$MODULES"
  } | LC_ALL=C sort -u
}
mapfile -t files < <(inputs)
image_build_and_import "${files[@]}"
