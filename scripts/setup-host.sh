#!/bin/sh
# Prepare a Debian 12 machine for building and testing clawrun. Idempotent:
# installs only what is missing, creates the unprivileged test user only if
# absent. Needs root. Never touches cgroup mounts.
set -eu

TEST_USER=${CLAWRUN_TEST_USER:-clawrun-test}
# util-linux: nsenter, which the egress hook of a bundle runs (essential on
# Debian, listed because clawrun needs it).
PKGS="libseccomp-dev libc6-dev busybox-static uidmap runc hyperfine gcc make pkg-config util-linux"

if [ "$(id -u)" -ne 0 ]; then
	echo "setup-host: not root; checking only" >&2
	missing=""
	for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
	if [ -n "$missing" ]; then
		echo "setup-host: missing packages:$missing (as root: apt-get install$missing)" >&2
		exit 1
	fi
	exit 0
fi

missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	echo "setup-host: installing$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if ! id "$TEST_USER" >/dev/null 2>&1; then
	echo "setup-host: creating unprivileged test user $TEST_USER"
	useradd --create-home --shell /bin/sh "$TEST_USER"
fi
# Subordinate ids let the rootless agent run as a non-root uid inside.
if ! grep -q "^$TEST_USER:" /etc/subuid 2>/dev/null; then
	usermod --add-subuids 200000-265535 "$TEST_USER"
fi
if ! grep -q "^$TEST_USER:" /etc/subgid 2>/dev/null; then
	usermod --add-subgids 200000-265535 "$TEST_USER"
fi

if [ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)" = 0 ]; then
	echo "setup-host: enabling unprivileged user namespaces"
	sysctl -q kernel.unprivileged_userns_clone=1
fi
