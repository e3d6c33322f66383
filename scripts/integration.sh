#!/bin/sh
# Run the container integration suite as root and rootless.
set -eu
GO=$1
TEST_USER=$2
here=$(pwd)
work=$(mktemp -d /tmp/clawrun-it.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
"$GO" test -tags seccomp -c -o "$work/integration.test" ./test
cp bin/clawrun bin/echo-agent "$work/"
chmod 755 "$work"/*
status=0
if [ "$(id -u)" -eq 0 ]; then
	echo "=== integration tests as root"
	(cd "$work" && CLAWRUN_BIN="$work/clawrun" CLAWRUN_AGENT_BIN="$work/echo-agent" ./integration.test -test.v -test.count=1 -test.timeout=15m) || status=1
	echo "=== integration tests rootless as $TEST_USER"
	(cd "$work" && runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$(getent passwd "$TEST_USER" | cut -d: -f6)" \
		CLAWRUN_BIN="$work/clawrun" CLAWRUN_AGENT_BIN="$work/echo-agent" ./integration.test -test.v -test.count=1 -test.timeout=15m) || status=1
else
	echo "=== integration tests rootless as $(id -un)"
	(cd "$work" && CLAWRUN_BIN="$work/clawrun" CLAWRUN_AGENT_BIN="$work/echo-agent" ./integration.test -test.v -test.count=1 -test.timeout=15m) || status=1
fi
cd "$here"
exit $status
