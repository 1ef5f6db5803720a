#!/usr/bin/env bash
# Provides promtool (to check the controller's /metrics exposition) from Debian's `prometheus`
# package: apt-get download + dpkg-deb -x, nothing installed system-wide and no Prometheus
# server started. Cached under ~/.cache/threadbox/promtool/<version>/.
# Prints the promtool path on stdout; progress on stderr. Exit 3 with one line
# "SKIPPED: promtool: <reason>" when this machine cannot provide it.
set -euo pipefail
CACHE="${THREADBOX_CACHE:-$HOME/.cache/threadbox}/promtool"
skip() {
  echo "SKIPPED: promtool: $*" >&2
  exit 3
}

# A cached copy first, so a machine without apt (or offline) still finds it.
cached=$(find "$CACHE" -path '*/usr/bin/promtool' -type f 2>/dev/null | sort | tail -n1 || true)
if [[ -n $cached && -z ${PROMTOOL_VERSION:-} ]]; then
  echo "$cached"
  exit 0
fi
command -v apt-get >/dev/null || skip "apt-get is not available (promtool comes from Debian's prometheus package)"
command -v dpkg-deb >/dev/null || skip "dpkg-deb is not available"
version=${PROMTOOL_VERSION:-$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')}
[[ -n $version && $version != "(none)" ]] || skip "no prometheus package in the apt sources (run apt-get update?)"
dir=$CACHE/${version//[^A-Za-z0-9.+-]/_}
if [[ ! -x $dir/usr/bin/promtool ]]; then
  tmp=$(mktemp -d /tmp/threadbox-promtool.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  echo "install-promtool: apt-get download prometheus=$version (~20 MB)" >&2
  (cd "$tmp" && apt-get download -q "prometheus=$version" >&2) || skip "apt-get download prometheus=$version failed"
  mkdir -p "$tmp/x"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  [[ -x $tmp/x/usr/bin/promtool ]] || skip "the prometheus package has no usr/bin/promtool"
  mkdir -p "$dir/usr/bin"
  mv "$tmp/x/usr/bin/promtool" "$dir/usr/bin/promtool"
fi
"$dir/usr/bin/promtool" --version >/dev/null 2>&1 || skip "$dir/usr/bin/promtool does not run here"
echo "$dir/usr/bin/promtool"
