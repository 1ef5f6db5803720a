#!/usr/bin/env bash
# Provides the Prometheus server and promtool from Debian's `prometheus` package: apt-get
# download + dpkg-deb -x, nothing installed system-wide and nothing started. Cached under
# ~/.cache/threadbox/prometheus/<version>/.
# Prints the directory holding `prometheus` and `promtool` on stdout; progress on stderr.
# Exit 3 with one line "SKIPPED: prometheus: <reason>" when this machine cannot provide them.
set -euo pipefail
CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}/prometheus"
BINARIES=(prometheus promtool)
skip() {
  echo "SKIPPED: prometheus: $*" >&2
  exit 3
}
complete() { [[ -x $1/prometheus && -x $1/promtool ]]; }

# A cached copy first, so a machine without apt (or offline) still finds it.
cached=$(find "$CACHE" -path '*/bin/prometheus' -type f 2>/dev/null | sort | tail -n1 || true)
if [[ -n $cached && -z ${PROMETHEUS_VERSION:-} ]] && complete "$(dirname "$cached")"; then
  dirname "$cached"
  exit 0
fi
command -v apt-get >/dev/null || skip "apt-get is not available (the server comes from Debian's prometheus package)"
command -v dpkg-deb >/dev/null || skip "dpkg-deb is not available"
version=${PROMETHEUS_VERSION:-$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')}
[[ -n $version && $version != "(none)" ]] || skip "no prometheus package in the apt sources (run apt-get update?)"
dir=$CACHE/${version//[^A-Za-z0-9.+-]/_}/bin
if ! complete "$dir"; then
  tmp=$(mktemp -d /tmp/threadbox-prometheus.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  echo "install-prometheus: apt-get download prometheus=$version (~20 MB)" >&2
  (cd "$tmp" && apt-get download -q "prometheus=$version" >&2) || skip "apt-get download prometheus=$version failed"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$dir"
  for bin in "${BINARIES[@]}"; do
    [[ -x $tmp/x/usr/bin/$bin ]] || skip "the prometheus package has no usr/bin/$bin"
    mv "$tmp/x/usr/bin/$bin" "$dir/$bin"
  done
fi
for bin in "${BINARIES[@]}"; do
  "$dir/$bin" --version >/dev/null 2>&1 || skip "$dir/$bin does not run here"
done
echo "$dir"
