#!/usr/bin/env bash
# Set up and run the whole test suite. On a fresh Debian 12 machine, run it as
# root: it installs the Debian packages the tests need (sshd, Nix, iproute2),
# makes .venv, installs the project with its test extra, and runs pytest.
# Arguments are passed on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2046
  apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip \
    $(grep -v '^#' .ci/apt-packages) >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]' -e tests/fixtures/greeting-plugin
exec .venv/bin/python -m pytest "$@"
