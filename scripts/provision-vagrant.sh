#!/bin/sh
# Provision a Debian/Ubuntu machine as a clawrun CI sandbox: build and test
# dependencies, an unprivileged user with subordinate ids, and systemd
# delegation of the cpu, cpuset, io, memory and pids controllers to user
# sessions (so rootless agents can be given cgroup v2 limits).
#
# Idempotent: a second run changes nothing and says so. It never mounts,
# unmounts or remounts anything under /sys/fs/cgroup; on a cgroup v1 host it
# only warns. `make test` runs it twice on the CI machine to prove both.
#
#   PROVISION_USER   the unprivileged user (default: vagrant)
set -eu

USER_NAME=${PROVISION_USER:-vagrant}
DROPIN_DIR=/etc/systemd/system/user@.service.d
DROPIN=$DROPIN_DIR/delegate.conf
DELEGATE="[Service]
Delegate=cpu cpuset io memory pids"
changed=0

if [ "$(id -u)" -ne 0 ]; then
	echo "provision: run as root" >&2
	exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)

# Build and test dependencies (the same list make test uses).
before=$(dpkg -l 2>/dev/null | wc -l)
CLAWRUN_TEST_USER=$USER_NAME sh "$here/setup-host.sh"
[ "$(dpkg -l 2>/dev/null | wc -l)" = "$before" ] || changed=1

# The user and its subordinate ranges (setup-host.sh creates them if absent).
id "$USER_NAME" >/dev/null

# systemd delegation for user sessions.
if [ "$(cat "$DROPIN" 2>/dev/null)" != "$DELEGATE" ]; then
	mkdir -p "$DROPIN_DIR"
	printf '%s\n' "$DELEGATE" >"$DROPIN.tmp"
	mv "$DROPIN.tmp" "$DROPIN"
	changed=1
	echo "provision: wrote $DROPIN"
fi
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
	if [ $changed -eq 1 ]; then
		systemctl daemon-reload
	fi
	# A lingering user keeps its user@.service (and so its delegated
	# cgroup) without an interactive login, e.g. for `vagrant ssh -c`.
	if [ ! -e "/var/lib/systemd/linger/$USER_NAME" ]; then
		loginctl enable-linger "$USER_NAME"
		changed=1
	fi
else
	echo "provision: systemd is not PID 1 here; delegation takes effect on a systemd host"
fi

# cgroup v2 is the Debian 12 / Ubuntu default; only report, never remount.
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
	echo "provision: cgroup v2"
else
	echo "provision: WARNING: /sys/fs/cgroup is not cgroup v2; boot with systemd.unified_cgroup_hierarchy=1 for rootless limits (left unchanged)"
fi

if [ $changed -eq 0 ]; then
	echo "provision: nothing to change"
fi
