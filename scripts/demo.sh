#!/bin/sh
# make demo: the embedded demo agent, rootless, then the same agent behind
# `clawrun serve` against the fake Slack of test/fakeslack on 127.0.0.1, so
# the whole path (Socket Mode in, container, chat.postMessage out) shows
# without a Slack account. As root, both run as the unprivileged test user
# so what you see is the rootless path.
#
#   sh scripts/demo.sh TEST_USER        (from the repo root, after make build)
#   sh scripts/demo.sh run BIN DIR      (internal: both parts, as the user)
#
# Environment: GO, the go command to build test/fakeslack/cmd/fakeslack
# (default: go in PATH, else /usr/local/go/bin/go).
set -eu

# The dummy tokens the fake Slack accepts (fakeslack.BotToken, AppToken).
BOT_TOKEN=xoxb-fake-bot-token-0000
APP_TOKEN=xapp-1-fake-app-token-0000

# run BIN DIR: the demo, then serve against the fake Slack. Everything it
# creates (rootfs, agent file, state, store, logs) stays in DIR.
run() {
	bin=$1 d=$2
	cd "$d"
	cr="$bin/clawrun --root $d/state --data $d/data"

	# Part 1: the demo agent over the agent protocol. --keep leaves its
	# rootfs for part 2; TMPDIR puts it in DIR.
	if ! TMPDIR=$d $cr demo --keep >"$d/demo.log" 2>&1; then
		cat "$d/demo.log"
		exit 1
	fi
	grep -v '^demo directory kept: ' "$d/demo.log" || true
	demo=$(sed -n 's/^demo directory kept: //p' "$d/demo.log")
	[ -d "$demo/rootfs" ] || {
		echo "demo: no rootfs in the output of clawrun demo --keep" >&2
		exit 1
	}

	# Part 2: the same agent routed from Slack. The ids are those of the
	# fake's script (test/fakeslack/cmd/fakeslack).
	cat >"$d/clawrun.yaml" <<EOF
agents:
  demo:
    rootfs: $demo/rootfs
    command: ["/agent", "-status"]
    slack:
      channels: [C0DEMO]      # #demo
      dm: true
      users: [U0ALICE]        # alice; mallory is not on the list
      post_to: [C0NEWS]       # #news
EOF
	echo
	echo "» the same agent behind 'clawrun serve', against a fake Slack on 127.0.0.1 (no Slack account needed)"
	echo "  agent file: slack: {channels: [C0DEMO], dm: true, users: [U0ALICE], post_to: [C0NEWS]}"
	"$bin/fakeslack" -url-file "$d/api-url" -done-file "$d/done" -agent demo -timeout 20s &
	fake=$!
	serve=""
	stop() {
		if [ -n "$serve" ] && kill -0 "$serve" 2>/dev/null; then
			kill -TERM "$serve" 2>/dev/null || true
			wait "$serve" 2>/dev/null || true
		fi
		kill -TERM "$fake" 2>/dev/null || true
	}
	trap stop EXIT
	# await FILE SECONDS: wait until the fake creates FILE; false if it
	# exits first or time runs out.
	await() {
		i=0
		while [ ! -e "$1" ]; do
			kill -0 "$fake" 2>/dev/null || return 1
			i=$((i + 1))
			[ "$i" -lt $(($2 * 20)) ] || return 1
			sleep 0.05
		done
	}
	await "$d/api-url" 10 || {
		echo "demo: the fake Slack did not start" >&2
		exit 1
	}
	SLACK_BOT_TOKEN=$BOT_TOKEN SLACK_APP_TOKEN=$APP_TOKEN CLAWRUN_SLACK_API_URL=$(cat "$d/api-url") \
		$cr serve --config "$d/clawrun.yaml" 2>"$d/serve.log" &
	serve=$!
	# The fake prints the conversation as it goes (it gives up on an
	# answer after its -timeout), then creates the done file and stays up
	# until serve has stopped.
	status=0
	await "$d/done" 150 || status=1
	# SIGTERM, as an operator would: each agent gets end of input, then
	# its container is removed.
	kill -TERM "$serve" 2>/dev/null || true
	sstatus=0
	wait "$serve" || sstatus=$?
	serve=""
	kill -TERM "$fake" 2>/dev/null || true
	wait "$fake" || status=$?
	if [ "$status" -ne 0 ] || [ "$sstatus" -ne 0 ]; then
		echo "demo: clawrun serve (exit $sstatus) log:" >&2
		cat "$d/serve.log" >&2
		exit 1
	fi
	left=$($cr ps --json)
	if [ "$left" != "[]" ]; then
		echo "demo: containers left after serve stopped: $left" >&2
		exit 1
	fi
	echo "» serve stopped on SIGTERM: agent container removed, nothing left behind. What serve logged (DATA/logs has the agent's stderr):"
	sed -n -e 's/.*msg="\([^"]*\)".*/\1/p' -e 's/.*msg=\([^ ]*\).*/\1/p' "$d/serve.log" | uniq -c | awk '{ n = $1; $1 = ""; printf "    %2d ×%s\n", n, $0 }'
}

if [ "${1:-}" = run ]; then
	shift
	run "$@"
	exit 0
fi

TEST_USER=$1
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
work=$(mktemp -d /tmp/clawrun-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir "$work/bin" "$work/run"
# The binaries get a directory of their own (see scripts/bench.sh: the
# directory of the binary libcontainer re-executes must not hold state).
cp bin/clawrun bin/echo-agent "$work/bin/"
"$GO" build -o "$work/bin/fakeslack" ./test/fakeslack/cmd/fakeslack
cp "$0" "$work/demo.sh"
chmod 755 "$work/bin" "$work/bin/"* "$work/demo.sh"
if [ "$(id -u)" -ne 0 ]; then
	sh "$work/demo.sh" run "$work/bin" "$work/run"
	exit 0
fi
echo "(running as the unprivileged user $TEST_USER: clawrun needs no root)"
chown "$TEST_USER" "$work/run"
runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	HOME="$(getent passwd "$TEST_USER" | cut -d: -f6)" sh "$work/demo.sh" run "$work/bin" "$work/run"
