#!/usr/bin/env bash
# Tools the operations tests use that pip cannot install: Prometheus and promtool
# (tests/ops/test_prometheus.py runs a real Prometheus; it skips with a reason when absent).
# On Debian/Ubuntu as root this installs them; otherwise it says what to install.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing prometheus (Debian package; provides promtool)"
  # The package would start a system service; we run our own instance per test.
  export DEBIAN_FRONTEND=noninteractive
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  fi
  apt-get install -y -q --no-install-recommends prometheus >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; } ||
    echo "could not install prometheus: the Prometheus tests will skip" >&2
  [ -z "$policy" ] || rm -f "$policy"
  exit 0
fi
echo "optional: install Prometheus (e.g. 'sudo apt-get install prometheus') for tests/ops/test_prometheus.py" >&2
