#!/bin/sh
# The limit tests of the cgroup v2 VM, run once as root and once as the
# delegated user. Each prints "PASS MODE-NAME" or "FAIL MODE-NAME: why".
mode=$1
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
pass() { echo "PASS $mode-$1"; }
fail() { echo "FAIL $mode-$1: $2"; }

dir=$(mktemp -d /tmp/cgv2-$mode.XXXXXX)
chmod 755 "$dir"
cd "$dir" || exit 1
cat > clawrun.yaml <<'YAML'
agents:
  forks:
    rootfs: /rootfs
    command: ["/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo FORKED $i"]
    limits: {pids: 16}
  hog:
    rootfs: /rootfs
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1; echo dd: $?"]
    limits: {memory: 32M}
  busy:
    rootfs: /rootfs
    command: ["/bin/sh", "-c", "while :; do :; done"]
    limits: {cpus: 0.2, memory: 64M, pids: 16}
  echo:
    rootfs: /rootfs
    command: ["/agent"]
YAML

field() { # field NAME JSON: a number or string value
	printf '%s' "$2" | tr -d '\n' | grep -o "\"$1\": *[^,}]*" | head -n 1 | sed 's/^[^:]*: *//; s/"//g'
}

if [ "$mode" = user ]; then
	out=$(clawrun doctor 2>&1)
	if printf '%s' "$out" | grep -q "delegated /user.slice/u1000"; then
		pass doctor
	else
		fail doctor "doctor does not report the delegation: $out"
	fi
fi

out=$(timeout 60 clawrun run --name forks forks 2>&1)
if printf '%s' "$out" | grep -q -e "can't fork" -e "Resource temporarily unavailable"; then
	pass pids-fork-storm
else
	fail pids-fork-storm "no fork failed: $(printf '%s' "$out" | tail -n 3)"
fi
clawrun rm -f forks >/dev/null 2>&1

if out=$(clawrun run -d hog 2>&1); then
	i=0
	while [ $i -lt 30 ] && ! clawrun ps 2>&1 | grep hog | grep -q oom-killed; do
		sleep 1
		i=$((i + 1))
	done
	if clawrun ps 2>&1 | grep hog | grep -q oom-killed; then
		pass memory-oom-killed
	else
		fail memory-oom-killed "ps: $(clawrun ps 2>&1 | grep hog)"
	fi
	clawrun rm -f hog >/dev/null 2>&1
else
	fail memory-oom-killed "run: $out"
fi

if out=$(clawrun run -d busy 2>&1); then
	sleep 3
	js=$(clawrun stats --json busy 2>&1)
	cg=$(field cgroup "$js")
	case "$mode:$cg" in
	root:/clawrun/busy | user:/user.slice/u1000/clawrun/busy) pass cgroup-placement ;;
	*) fail cgroup-placement "cgroup '$cg' ($js)" ;;
	esac
	thr=$(sed -n 's/^nr_throttled //p' "/sys/fs/cgroup$cg/cpu.stat" 2>/dev/null)
	if [ "${thr:-0}" -gt 0 ]; then
		pass cpu-throttled
	else
		fail cpu-throttled "nr_throttled '${thr}' in /sys/fs/cgroup$cg/cpu.stat"
	fi
	cpu=$(field cpu_usage_ns "$js")
	mem=$(field memory_current_bytes "$js")
	pids=$(field pids_current "$js")
	if [ "$(field cgroup_version "$js")" = 2 ] && [ "${cpu:-0}" -gt 0 ] 2>/dev/null && [ "${mem:-0}" -gt 0 ] 2>/dev/null && [ "${pids:-0}" -gt 0 ] 2>/dev/null; then
		pass stats
	else
		fail stats "$js"
	fi
	clawrun rm -f busy >/dev/null 2>&1
else
	fail cgroup-placement "run: $out"
fi

out=$(echo '{"id":"1","text":"ping"}' | timeout 60 clawrun run --name echo echo 2>&1)
if printf '%s' "$out" | grep -q pong; then
	pass no-limits-run
else
	fail no-limits-run "$out"
fi
clawrun rm -f echo >/dev/null 2>&1
exit 0
