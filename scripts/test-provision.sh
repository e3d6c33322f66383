#!/bin/sh
# CI check of scripts/provision-vagrant.sh on this machine: it must succeed,
# be idempotent (the second run changes nothing) and leave every cgroup
# mount exactly as it was.
set -eu
if [ "$(id -u)" -ne 0 ]; then
	echo "test-provision: skipped (needs root; the Vagrant box provisions as root)"
	exit 0
fi
user=${1:-clawrun-test}
before=$(grep cgroup /proc/self/mountinfo | sort)
PROVISION_USER=$user sh scripts/provision-vagrant.sh >/dev/null
second=$(PROVISION_USER=$user sh scripts/provision-vagrant.sh)
after=$(grep cgroup /proc/self/mountinfo | sort)
fail=0
case "$second" in
*"nothing to change"*) ;;
*) echo "FAIL provision: second run changed something:"; echo "$second"; fail=1 ;;
esac
if [ "$before" != "$after" ]; then
	echo "FAIL provision: cgroup mounts changed"
	fail=1
fi
if [ $fail -eq 0 ]; then
	echo "provision-vagrant.sh is idempotent and leaves cgroup mounts alone"
	echo "provision: 1 passed, 0 failed"
fi
exit $fail
