#!/usr/bin/env bash
# Set up, then drive the proxmox_vm stub through the runner: create, read,
# update and delete a VM, the way NixOps4 would, over the real protocol.
# Needs python3 with venv (installed here from Debian when run as root on a
# machine that lacks it); the stub keeps its cluster in a temporary directory,
# removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e .
run() { echo "+ fediversity-provider $*" >&2; .venv/bin/fediversity-provider "$@"; }

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
inputs=$(printf '{"node": "pve", "name": "web1", "template": "debian-12-cloud", "cores": 2, "memoryMiB": 2048, "diskGiB": 20, "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo"], "ipConfig": "dhcp", "started": true, "stub": {"stateDir": "%s"}}' "$state")
bigger=$(echo "$inputs" | sed 's/"cores": 2/"cores": 4/; s/"diskGiB": 20/"diskGiB": 40/')

outputs=$(run create --type proxmox_vm --inputs-json "$inputs" --stateful)
echo "$outputs"
run read --type proxmox_vm --inputs-json "$inputs" --outputs-json "$outputs"
outputs=$(run update --type proxmox_vm --previous-inputs-json "$inputs" --previous-outputs-json "$outputs" --inputs-json "$bigger")
echo "$outputs"
run delete --type proxmox_vm --inputs-json "$bigger" --outputs-json "$outputs"
if run read --type proxmox_vm --inputs-json "$bigger" --outputs-json "$outputs"; then
  echo "demo: the VM should be gone after delete" >&2
  exit 1
fi
echo "demo: created, read, updated and deleted a VM on the stub; the last read says it is gone, as it should." >&2
