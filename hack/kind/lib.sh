# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Shared by hack/kind/{up,down,tools,exec,build-node}. Sourced, not executed.
#
# Two ways to run kind:
#   host     a developer's machine whose Docker answers `docker info`: kind's published node
#            image, the host's Docker, nothing private.
#   private  no usable Docker and no registry (CI here): Debian's docker.io unpacked under the
#            cache, dockerd with its own containerd in the network namespace $NETNS (so nothing of
#            it touches the host's iptables or the host cluster's containerd), and a node image
#            built from hack/cluster's binaries (hack/kind/build-node).
# Recipe and measurements: ../shared/research/kind-feasibility.md (issue 17).

KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$KIND_DIR/../.." && pwd)

KIND_VERSION=v0.33.0        # sigs.k8s.io/kind (Go module proxy)
SKAFFOLD_VERSION=v2.16.1    # the newest the proxy here serves (v2.16.2 and later: 403)
CLUSTER_NAME=threadbox      # manifests/kind-config.yaml names it; kubectl context kind-threadbox
NODE_SUITE=bookworm         # debootstrap suite of the node image and of its k8s images
# Bump when the private engine or the node image recipe changes (part of their cache keys).
KIND_RECIPE=1

CACHE_BASE=${THREADBOX_CACHE:-$HOME/.cache/threadbox}
KIND_CACHE=$CACHE_BASE/kind
NETNS=threadbox-kind
RUN=/run/threadbox-kind                 # pids, sockets, the env file the tests read
STATE=/var/lib/threadbox-kind           # docker and containerd data (11 GB at peak), kubeconfig
LOGS=/var/log/threadbox-kind
DOCKER_SOCK=$RUN/docker.sock
PROXY_SOCK=$RUN/egress.sock
PROXY_PORT=3128
ENV_FILE=$RUN/env
# The kubeconfig is our own: kind never writes to the user's ~/.kube/config here.
export KUBECONFIG=$STATE/kubeconfig

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export PATH=/usr/local/go/bin:$PATH

# A failing command says where, even inside a function run through `timed`.
set -o errtrace
trap 'echo "[kind] ERROR: ${BASH_SOURCE[0]##*/} line $LINENO: $BASH_COMMAND failed" >&2' ERR

_T0=${_T0:-$SECONDS}
log() { printf '[kind %4ss] %s\n' "$((SECONDS - _T0))" "$*" >&2; }
die() {
  printf '[kind %4ss] ERROR: %s\n' "$((SECONDS - _T0))" "$*" >&2
  exit 1
}
# Exit 3: this machine cannot provide kind (hack/test.sh's `provide` prints nothing more).
skip() {
  echo "SKIPPED: kind: $*" >&2
  exit 3
}
die_log() {
  {
    echo "----- last 30 lines of $2 -----"
    tail -n 30 "$2" 2>/dev/null || true
    echo "-----"
  } >&2
  die "$1 (full log: $2)"
}
# timed DESC CMD...: runs CMD, logging how long it took (the README's table comes from these lines).
timed() {
  local desc=$1 t=$SECONDS
  shift
  log "$desc ..."
  "$@"
  log "$desc: done in $((SECONDS - t))s"
}

tools_dir() { echo "$KIND_CACHE/tools/kind-$KIND_VERSION-skaffold-$SKAFFOLD_VERSION-$(go env GOVERSION 2>/dev/null || echo nogo)"; }

# The engine's prefix, keyed by the Debian package versions it unpacks.
engine_dir() { echo "$KIND_CACHE/engine/$1-r$KIND_RECIPE"; }

host_docker_ok() {
  [[ ${THREADBOX_KIND_ENGINE:-auto} != private ]] && command -v docker >/dev/null 2>&1 &&
    timeout 20 docker info >/dev/null 2>&1
}

# The mode the running cluster was brought up in, from the env file `up` wrote.
current_mode() { [[ -f $ENV_FILE ]] && sed -n 's/^THREADBOX_KIND_MODE=//p' "$ENV_FILE"; }

pid_alive() { [[ -n ${1:-} && -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
pid_of() { [[ -f $RUN/$1.pid ]] && cat "$RUN/$1.pid"; }

# wait_until DESC TIMEOUT CMD...: polls CMD once a second until it succeeds.
wait_until() {
  local desc=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < timeout)) || return 1
    sleep 1
  done
  log "ok: $desc ($((SECONDS - start))s)"
}
