#!/usr/bin/env bash
# Build the controller image (Dockerfile.controller) with buildah and import it into the
# cluster's containerd (k8s.io), the same way as hack/build-sandbox-image.sh:
#   hack/build-controller-image.sh            build if needed, tag :<hash> and :dev, import
#   NO_IMPORT=1 / FORCE=1 / BASE=python:3.12-slim   as for the sandbox image
#   WITH_OI=1                                  include the Open Interpreter engine (`oi` extra)
# The tag is a hash of Dockerfile.controller, pyproject.toml, uv.lock, controller/, the sandbox's
# requirements (what the agent tells the LLM is installed), WITH_OI
# and the base image's ID. Prints the image reference on stdout; progress on stderr. Exit 3 with one
# line "SKIPPED: controller-image: <reason>" when this machine cannot build or import images.
set -euo pipefail
COMPONENT=controller-image
source "$(dirname "$0")/image-lib.sh"
trap 'echo "hack/build-controller-image.sh: failed at line $LINENO" >&2' ERR

IMAGE=localhost/threadbox-controller
DOCKERFILE=Dockerfile.controller
BASE=${BASE:-$BASE_IMAGE}
BUILD_NOTE="uv sync of the controller's dependencies takes a minute or two"
BUILD_ARGS=(--build-arg "WITH_OI=${WITH_OI:-0}")

inputs() {
  cd "$ROOT"
  {
    printf '%s\n' "$DOCKERFILE" pyproject.toml uv.lock sandbox-image/requirements.in sandbox-image/requirements.txt
    find controller -type f ! -name '*.pyc' ! -path '*/__pycache__/*'
  } | LC_ALL=C sort -u
}
mapfile -t files < <(inputs)
image_build_and_import "${files[@]}"
