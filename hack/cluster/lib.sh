# shellcheck shell=bash
# Shared helpers for hack/cluster/{up,down,status,smoke,import-image}. Sourced, not executed.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$CLUSTER_DIR/versions.env"

# Bump when the build recipe changes in a way that must invalidate cached binaries/images.
RECIPE_REV=1
GVISOR_RECIPE=2  # the same, for hack/cluster/build-gvisor's own cache (the shim patch is keyed apart)

STATE_DIR=${THREADBOX_CLUSTER_STATE:-/var/lib/threadbox-cluster}
LOG_DIR=${THREADBOX_CLUSTER_LOGS:-/var/log/threadbox-cluster}
RUN_DIR=$STATE_DIR/run
PKI_DIR=$STATE_DIR/pki
CONF_DIR=$STATE_DIR/conf
CACHE_ROOT=${THREADBOX_CLUSTER_CACHE:-$HOME/.cache/threadbox/cluster}
BIN_DIR=$STATE_DIR/bin                 # stable path: symlink to $CACHE/bin
KUBECONFIG_PATH=$STATE_DIR/admin.kubeconfig

NODE_NAME=threadbox-node
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
CLUSTER_DNS=10.96.0.10
CNI_BIN_DIR=/usr/lib/cni
CONTAINERD_SOCK=/run/containerd/containerd.sock

PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_TAG
COREDNS_IMAGE=localhost/coredns:$COREDNS_VERSION
BASE_IMAGE=localhost/threadbox-base:$BASE_SUITE

# Daemons in start order (stopped in reverse).
DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export PATH=$BIN_DIR:/usr/local/go/bin:$HOME/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export CONTAINERD_ADDRESS=$CONTAINERD_SOCK
export CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_SOCK

_T0=${_T0:-$SECONDS}
log() { printf '[cluster %4ss] %s\n' "$((SECONDS - _T0))" "$*" >&2; }
warn() { printf '[cluster %4ss] WARNING: %s\n' "$((SECONDS - _T0))" "$*" >&2; }
die() {
  printf '[cluster %4ss] ERROR: %s\n' "$((SECONDS - _T0))" "$*" >&2
  exit 1
}
# Exit code 3 = "this machine cannot run the cluster"; the test runner turns it into a skip.
skip() {
  echo "SKIPPED: kubernetes-cluster: $*" >&2
  exit 3
}
# die with the tail of a log file
die_log() {
  local msg=$1 f=$2
  {
    echo "----- last 40 lines of $f -----"
    tail -n 40 "$f" 2>/dev/null || true
    echo "-----"
  } >&2
  die "$msg (full log: $f)"
}

gvisor_cache() {
  local patch
  patch=$(sha256sum "$CLUSTER_DIR/gvisor-shim.patch" | cut -c1-8)
  echo "${THREADBOX_GVISOR_CACHE:-$HOME/.cache/threadbox/gvisor}/$GVISOR_VERSION-r$GVISOR_RECIPE-$patch"
}

cache_key() {
  {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$CLUSTER_DIR/versions.env" | grep -v -e '^$' -e '^GVISOR_'
    go version 2>/dev/null || echo nogo
    echo "RECIPE_REV=$RECIPE_REV"
  } | sha256sum | cut -c1-16
}

init_cache_vars() {
  CACHE_KEY=$(cache_key)
  CACHE=$CACHE_ROOT/$CACHE_KEY
  CBIN=$CACHE/bin
  CIMG=$CACHE/img
  CSTAMP=$CACHE/stamps
  CSRC=$CACHE/src
}

# Serialize up/down/build (two test runners may call `up` at once). fd 9 is closed for daemons.
take_lock() {
  exec 9>>/run/threadbox-cluster.lock
  if ! flock -n 9; then
    log "waiting for another hack/cluster command to finish (lock /run/threadbox-cluster.lock)"
    flock -w 3600 9 || die "could not take /run/threadbox-cluster.lock within 1h"
  fi
}

need_root() { [[ $(id -u) == 0 ]] || skip "must run as root (needs iptables, mounts, cgroups)"; }

# ---------------------------------------------------------------------------
# daemons
pidfile() { echo "$RUN_DIR/$1.pid"; }
daemon_pid() {
  local f; f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  local p; p=$(cat "$f")
  [[ -n $p && -d /proc/$p ]] || return 1
  # guard against pid reuse: the process must still be our binary
  local exe; exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
  [[ $(basename "${exe% (deleted)}") == "$1" ]] || return 1
  echo "$p"
}
daemon_running() { daemon_pid "$1" >/dev/null; }

# start_daemon NAME CMD... : runs CMD in its own session, logs to $LOG_DIR/NAME.log
start_daemon() {
  local name=$1; shift
  if daemon_running "$name"; then
    log "$name already running (pid $(daemon_pid "$name"))"
    return 0
  fi
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  echo "=== $(date -u +%FT%TZ) starting: $*" >>"$LOG_DIR/$name.log"
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&- &
  echo $! >"$(pidfile "$name")"
  log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

# alive = exists and is not a zombie (our daemons are reparented to PID 1, which may reap late)
proc_alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

stop_daemon() {
  local name=$1 p i
  if p=$(daemon_pid "$name"); then
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do
      proc_alive "$p" || break
      sleep 0.1
    done
    if proc_alive "$p"; then
      warn "$name (pid $p) did not stop on SIGTERM, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      sleep 0.5
    fi
    log "stopped $name"
  fi
  rm -f "$(pidfile "$name")"
}

# wait_for DESC TIMEOUT_S DAEMON_FOR_LOG CMD... : poll CMD until success
wait_for() {
  local desc=$1 timeout=$2 dname=$3; shift 3
  local start=$SECONDS
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n $dname ]] && ! daemon_running "$dname"; then
      die_log "$dname exited while waiting for: $desc" "$LOG_DIR/$dname.log"
    fi
    if ((SECONDS - start > timeout)); then
      if [[ -n $dname ]]; then die_log "timed out after ${timeout}s waiting for: $desc" "$LOG_DIR/$dname.log"; fi
      die "timed out after ${timeout}s waiting for: $desc"
    fi
    sleep 1
  done
  log "ok: $desc ($((SECONDS - start))s)"
}

kc() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

node_ip() {
  local dev ip
  dev=$(ip -4 route show default 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="dev") {print $(i+1); exit}}')
  if [[ -n $dev ]]; then
    ip=$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4}' | cut -d/ -f1 | head -n1)
  fi
  if [[ -z ${ip:-} ]]; then
    ip=$(ip -4 -o addr show scope global | grep -v -E ' (cni0|veth|kube-)' | awk '{print $4}' | cut -d/ -f1 | head -n1)
  fi
  [[ -n ${ip:-} ]] || return 1
  echo "$ip"
}
