#!/bin/sh
# make bench: start-to-exit time of a no-op container, clawrun next to runc,
# on the same sandbox (the bundle is clawrun's own spec and a copy of its
# rootfs). As root it measures root mode, then rootless as $BENCH_USER if that
# user exists; as a normal user it measures rootless as that user.
# See docs/benchmarks.md.
#
#   sh scripts/bench.sh              (from the repo root, after make build)
#   sh scripts/bench.sh pair MODE DIR BIN   (internal: one mode, run as its user)
#
# Environment: BENCH_RUNS runs per command per round (default 35, at least
# 30), BENCH_ROUNDS (default 3), BENCH_USER (default clawrun-test).
# Results: .bench/bench-MODE.json (hyperfine --export-json).
#
# Then the policy's walk of a granted tree (Go benchmark), and message → reply through `clawrun serve` against the fake Slack
# (test/bench_serve_test.go), in the same modes: BENCH_SERVE=0 skips it,
# BENCH_SERVE_MESSAGES (default 1000) sets the message count, GO the go
# command that builds the test binary. Results: .bench/serve-MODE.json.
set -eu

RUNS=${BENCH_RUNS:-35}
SERVE=${BENCH_SERVE:-1}
SERVE_MESSAGES=${BENCH_SERVE_MESSAGES:-1000}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=5
BENCH_USER=${BENCH_USER:-clawrun-test}
# The user's PATH for the rootless pass; runc is in /usr/sbin on Debian.
USER_PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin

die() {
	echo "bench: $*" >&2
	exit 1
}

# write_agents FILE IDMAP ROOTFS [BUNDLE_ROOTFS]: the noop agent, and with a
# bundle the same agent on the bundle's rootfs copy (hostname is pinned so
# both have the same spec apart from the rootfs path and cgroup name), plus,
# if IDMAP is not clawrun's default, noop-auto with the default map.
write_agents() {
	{
		echo "version: 1"
		echo "agents:"
		echo "  noop:"
		echo "    rootfs: $3"
		echo '    command: ["/bin/true"]'
		echo "    hostname: noop"
		echo "    idmap: $2"
		if [ $# -ge 4 ]; then
			echo "  noop-bundle:"
			echo "    rootfs: $4"
			echo '    command: ["/bin/true"]'
			echo "    hostname: noop"
			echo "    idmap: $2"
		fi
		if [ $# -ge 4 ] && [ "$2" != auto ]; then
			echo "  noop-auto:"
			echo "    rootfs: $3"
			echo '    command: ["/bin/true"]'
			echo "    hostname: noop"
			echo "    idmap: auto"
		fi
	} >"$1"
}

# pair MODE DIR BIN: build the rootfs, agent file and bundle in DIR, then
# time clawrun and runc in one hyperfine run. Runs as the user being measured.
pair() {
	mode=$1 d=$2 bin=$3
	cd "$d"
	cr="$bin/clawrun --root $d/clawrun-state --data $d/clawrun-data"
	rl=""
	if [ "$mode" = rootless ]; then
		rl="--rootless true"
	fi
	mkdir -p "$d/runc-state"

	# The demo builds the busybox rootfs (and runs the demo agent once,
	# which doubles as a smoke test of this mode).
	if ! TMPDIR=$d $cr demo --keep >"$d/demo.log" 2>&1; then
		cat "$d/demo.log" >&2
		die "$mode: clawrun demo --keep failed"
	fi
	demo=$(sed -n 's/^demo directory kept: //p' "$d/demo.log")
	[ -d "$demo/rootfs" ] || die "$mode: no rootfs in clawrun demo output (see $d/demo.log)"

	# clawrun's default id map first; runc 1.1 cannot run a rootless spec
	# whose container root is a subordinate id (it fchowns its stdio pipes
	# to that id and gets EPERM), so fall back to a single-id map and say so.
	idmap=""
	for try in auto single; do
		write_agents "$d/clawrun.yaml" "$try" "$demo/rootfs"
		$cr bundle noop "$d/bundle-$try" --config "$d/clawrun.yaml" >/dev/null ||
			die "$mode: clawrun bundle noop $d/bundle-$try failed"
		if runc --root "$d/runc-state" $rl run -b "$d/bundle-$try" "probe-$try" \
			</dev/null >"$d/probe-$try.log" 2>&1; then
			idmap=$try
			break
		fi
		echo "note ($mode): runc cannot run the bundle with idmap: $try:" \
			"$(tail -n 1 "$d/probe-$try.log")"
		runc --root "$d/runc-state" delete -f "probe-$try" >/dev/null 2>&1 || true
	done
	[ -n "$idmap" ] || die "$mode: runc cannot run clawrun's bundle with either id map (errors above)"
	if [ "$idmap" != auto ]; then
		echo "note ($mode): both sides use idmap: $idmap (container root = the invoking user)"
	fi
	bundle=$d/bundle-$idmap
	write_agents "$d/clawrun.yaml" "$idmap" "$demo/rootfs" "$bundle/rootfs"
	$cr run --config "$d/clawrun.yaml" noop-bundle </dev/null ||
		die "$mode: clawrun run noop-bundle failed"

	# hyperfine runs each command through sh -c and subtracts the shell's
	# start-up time, so the shell is what gives runc a fresh id per run
	# ($$) at no cost to either side. clawrun-idmap-auto exists only when
	# the pair had to leave clawrun's default map: it is what a rootless
	# user with subordinate ids gets by default, for reference.
	names="clawrun runc clawrun-on-bundle"
	if [ "$idmap" != auto ]; then
		names="$names clawrun-idmap-auto"
	fi
	cmd_clawrun="$cr run --config $d/clawrun.yaml noop"
	cmd_runc="runc --root $d/runc-state${rl:+ $rl} run -b $bundle bench-\$\$"
	cmd_on_bundle="$cr run --config $d/clawrun.yaml noop-bundle"
	cmd_auto="$cr run --config $d/clawrun.yaml noop-auto"

	# hyperfine times one command's runs back to back, so background load
	# that comes and goes over seconds would favour whichever command ran
	# in a quiet spell. Listing every command once per round, in a rotated
	# order, and pooling the rounds spreads that drift over all of them.
	set --
	order=$names
	r=1
	while [ "$r" -le "$ROUNDS" ]; do
		for n in $order; do
			case $n in
			clawrun) c=$cmd_clawrun ;;
			runc) c=$cmd_runc ;;
			clawrun-on-bundle) c=$cmd_on_bundle ;;
			clawrun-idmap-auto) c=$cmd_auto ;;
			esac
			set -- "$@" -n "$n.$r" "$c"
		done
		order="${order#* } ${order%% *}"
		r=$((r + 1))
	done
	echo "=== $mode, as $(id -un) (uid $(id -u)), idmap: $idmap"
	printf "hyperfine --shell=sh --style=basic --warmup %s --runs %s --export-json %s" "$WARMUP" "$RUNS" "$d/hyperfine.json"
	for arg in "$@"; do
		if [ "$arg" = -n ]; then
			printf ' \\\n  -n'
		else
			printf " '%s'" "$arg"
		fi
	done
	echo
	hyperfine --shell=sh --style=basic --warmup "$WARMUP" --runs "$RUNS" \
		--export-json "$d/hyperfine.json" "$@" ||
		die "$mode: hyperfine failed (a command exited non-zero?)"

	# Every run's time, as "NAME seconds", pooled over the rounds, and each
	# round's mean CPU time (user + system) as "cpu NAME seconds". The JSON
	# is hyperfine's pretty-printed export: one key or array item a line.
	awk '/"command":/ { n = $2; gsub(/[",]/, "", n); sub(/[.][0-9]+$/, "", n) }
		/"user":/ { u = $2; sub(/,$/, "", u) }
		/"system":/ { v = $2; sub(/,$/, "", v); print "cpu", n, u + v }
		/"times": \[/ { t = 1; next }
		t && /\]/ { t = 0 }
		t { v = $1; sub(/,$/, "", v); print n, v }' "$d/hyperfine.json" >"$d/samples"
	# CPU time is what the runtime itself spends; unlike wall time it
	# hardly moves when other work competes for the cores.
	cpu=$(awk '$1 == "cpu" { s[$2] += $3; k[$2]++ }
		END { a = s["clawrun"] / k["clawrun"]; b = s["runc"] / k["runc"]
			printf "%.1f %.1f %.2f", a * 1000, b * 1000, a / b }' "$d/samples")
	set -- $cpu
	printf "%-9s %-7s %9s %9s %12s\n" "$mode" "$idmap" "$1" "$2" "$3" >"$d/cpu"
	line="$mode $idmap"
	for n in $names; do
		m=$(awk -v n="$n" '$1 == n { print $2 }' "$d/samples" | sort -n | awk '
			{ a[NR] = $1 }
			END { if (NR == 0) exit 1; print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), NR }') ||
			die "$mode: no times for $n in $d/hyperfine.json"
		line="$line $m"
	done
	# line: MODE IDMAP then median and count for each of $names.
	set -- $line
	awk -v m="$1" -v i="$2" -v a="$3" -v na="$4" -v b="$5" -v c="$7" -v x="${9:-}" 'BEGIN {
		auto = x == "" ? "-" : sprintf("%.1f", x * 1000)
		printf "%-9s %-7s %5d %9.1f %9.1f %9.1f %12.2f %11.2f %13s\n", m, i, na, a * 1000, b * 1000, c * 1000, a / b, c / b, auto
	}' >"$d/result"
}

# serve MODE DIR BIN: message → reply through clawrun serve, run as the
# user being measured.
serve() {
	mode=$1 d=$2 bin=$3
	cd "$d"
	CLAWRUN_BIN=$bin/clawrun CLAWRUN_AGENT_BIN=$bin/echo-agent CLAWRUN_BENCH_SERVE=1 \
		CLAWRUN_BENCH_MESSAGES=$SERVE_MESSAGES CLAWRUN_BENCH_OUT=$d/serve.json \
		"$bin/integration.test" -test.run '^TestServeBench$' -test.count=1 -test.timeout=20m >"$d/serve.log" 2>&1 || {
		cat "$d/serve.log" >&2
		die "$mode: the serve benchmark failed"
	}
	sed -n '/^=== clawrun serve/,/^target/p' "$d/serve.log"
}

case "${1:-}" in
pair)
	shift
	pair "$@"
	exit 0
	;;
serve)
	shift
	serve "$@"
	exit 0
	;;
esac

[ -x bin/clawrun ] && [ -x bin/echo-agent ] || die "bin/clawrun missing: run make build first"
for t in hyperfine runc awk; do
	command -v "$t" >/dev/null || die "$t not found in PATH (Debian: apt-get install $t)"
done
[ "$RUNS" -ge 30 ] || die "BENCH_RUNS=$RUNS: use at least 30 runs"
[ "$ROUNDS" -ge 1 ] || die "BENCH_ROUNDS=$ROUNDS: use at least 1 round"

work=$(mktemp -d /tmp/clawrun-bench.XXXXXX)
cleanup() {
	# runc run removes its container on exit; an interrupted run may not.
	for m in root rootless; do
		st=$work/$m/runc-state
		[ -d "$st" ] || continue
		for id in $(runc --root "$st" list -q 2>/dev/null); do
			runc --root "$st" delete -f "$id" >/dev/null 2>&1 || true
		done
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The binaries get a directory of their own: libcontainer seals its
# re-executed binary with an overlayfs whose lower dirs are the binary's
# directory and the container's state dir, and the kernel refuses
# overlapping lower dirs. clawrun would then fall back to copying itself
# into a memfd on every start, which real installs (/usr/local/bin vs
# /run/clawrun) do not pay.
chmod 755 "$work"
mkdir "$work/bin"
cp bin/clawrun bin/echo-agent "$work/bin/"
if [ "$SERVE" = 1 ]; then
	"$GO" test -tags seccomp -c -o "$work/bin/integration.test" ./test ||
		die "cannot build the test binary for the serve benchmark (GO=$GO)"
fi
cp "$0" "$work/bench.sh"
chmod 755 "$work/bin" "$work/bin/"* "$work/bench.sh"
mkdir -p .bench

echo "machine: $(nproc) cores, kernel $(uname -r), $(runc --version | head -n 1), $(hyperfine --version)"
# Rootless, libcontainer copies the clawrun binary into a memfd on every
# start (runc does the same with its own), so its size is part of the cost.
echo "binaries: clawrun $(wc -c <bin/clawrun) bytes, runc $(wc -c <"$(command -v runc)") bytes"
echo "cgroups: $(stat -fc %T /sys/fs/cgroup) on /sys/fs/cgroup (cgroup2fs = v2, tmpfs = v1)"
modes=""
if [ "$(id -u)" -eq 0 ]; then
	mkdir "$work/root"
	sh "$work/bench.sh" pair root "$work/root" "$work/bin"
	cp "$work/root/hyperfine.json" .bench/bench-root.json
	modes="root"
	if id "$BENCH_USER" >/dev/null 2>&1; then
		mkdir "$work/rootless"
		chown "$BENCH_USER" "$work/rootless"
		home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
		runuser -u "$BENCH_USER" -- env -i PATH="$USER_PATH" HOME="$home" \
			BENCH_RUNS="$RUNS" BENCH_ROUNDS="$ROUNDS" \
			sh "$work/bench.sh" pair rootless "$work/rootless" "$work/bin"
		cp "$work/rootless/hyperfine.json" .bench/bench-rootless.json
		modes="$modes rootless"
	else
		echo "note: user $BENCH_USER does not exist; rootless not measured"
	fi
else
	mkdir "$work/rootless"
	sh "$work/bench.sh" pair rootless "$work/rootless" "$work/bin"
	cp "$work/rootless/hyperfine.json" .bench/bench-rootless.json
	modes="rootless"
fi

echo
echo "median start-to-exit of /bin/true in ms, over $ROUNDS rounds of $RUNS runs per command (hyperfine JSON in .bench/)"
printf "%-9s %-7s %5s %9s %9s %9s %12s %11s %13s\n" mode idmap runs clawrun runc on-bundle clawrun/runc bundle/runc clawrun-auto
for m in $modes; do
	cat "$work/$m/result"
done
echo "mean CPU time (user + system) per run in ms"
printf "%-9s %-7s %9s %9s %12s\n" mode idmap clawrun runc clawrun/runc
for m in $modes; do
	cat "$work/$m/cpu"
done
echo "target (issue 2): clawrun/runc <= 1.2"

# Each run also walks every granted directory for blocked names (policy):
# its cost per entry, from the Go benchmark (the no-op agent above has no
# grant, so it is not in the figures above).
echo
echo "policy: blocked-path walk of a granted tree (go test -bench BlockedWalk ./policy)"
"$GO" test -run '^$' -bench 'BlockedWalk$' -benchtime 20x ./policy | grep '^Benchmark'

[ "$SERVE" = 1 ] || exit 0
echo
echo "message → reply through clawrun serve: fake Slack on loopback, real containers and store, $SERVE_MESSAGES messages (docs/benchmarks.md)"
for m in $modes; do
	mkdir -p "$work/serve-$m"
	if [ "$m" = rootless ] && [ "$(id -u)" -eq 0 ]; then
		chown "$BENCH_USER" "$work/serve-$m"
		home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
		runuser -u "$BENCH_USER" -- env -i PATH="$USER_PATH" HOME="$home" \
			BENCH_SERVE_MESSAGES="$SERVE_MESSAGES" \
			sh "$work/bench.sh" serve "$m" "$work/serve-$m" "$work/bin"
	else
		sh "$work/bench.sh" serve "$m" "$work/serve-$m" "$work/bin"
	fi
	cp "$work/serve-$m/serve.json" ".bench/serve-$m.json"
done
