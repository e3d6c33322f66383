#!/bin/sh
# make demo: the embedded demo agent, rootless. As root, the demo runs as the
# unprivileged test user so what you see is the rootless path.
set -eu
TEST_USER=$1
if [ "$(id -u)" -ne 0 ]; then
	exec bin/clawrun demo
fi
work=$(mktemp -d /tmp/clawrun-demo-bin.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp bin/clawrun bin/echo-agent "$work/"
echo "(running as the unprivileged user $TEST_USER: clawrun needs no root)"
cd "$work"
runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$(getent passwd "$TEST_USER" | cut -d: -f6)" ./clawrun demo
