#!/bin/sh
# Install Kannel's SMSC emulator (test_smsc, from Debian's kannel-extras) for the SMPP
# cross-check test (tests/providers/test_smpp_kannel.py). Idempotent; needs apt-get and root.
set -eu
if command -v test_smsc >/dev/null 2>&1 || [ -x /usr/lib/kannel/test/test_smsc ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends kannel-extras >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y --no-install-recommends kannel-extras >/dev/null
}
