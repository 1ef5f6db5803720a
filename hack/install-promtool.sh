#!/usr/bin/env bash
# Provides promtool (to check the controller's /metrics exposition and test the chart's alerts):
# the one hack/install-prometheus.sh extracts from Debian's `prometheus` package, beside the server.
# Prints the promtool path on stdout; exit 3 with one "SKIPPED: prometheus: <reason>" line when
# this machine cannot provide it.
set -euo pipefail
dir=$("$(dirname "$0")/install-prometheus.sh")
echo "$dir/promtool"
