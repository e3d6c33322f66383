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

cat > io-agents.yaml <<'YAML'
agents:
  iow:
    rootfs: /rootfs
    command: ["/bin/sleep", "1000"]
    limits: {io_weight: 200}
YAML

# io_weight_file TEST FILE WANT: run iow (limits.io_weight 200) and check
# what runc wrote to FILE in its cgroup.
io_weight_file() {
	if out=$(clawrun --config io-agents.yaml run -d --name iow iow 2>&1); then
		js=$(clawrun stats --json iow 2>&1)
		w=$(head -n 1 "/sys/fs/cgroup$(field cgroup "$js")/$2" 2>&1)
		if [ "$w" = "$3" ]; then
			pass "$1"
		else
			fail "$1" "$2 '$w' in $(field cgroup "$js"), want '$3'"
		fi
	else
		fail "$1" "run: $out"
	fi
}

# The BFQ stage (root, last): once the bfq module is loaded every cgroup
# has io.bfq.weight and runc writes the weight there, unconverted, instead
# of io.weight; it acts only on a disk BFQ schedules.
bfq() {
	insmod /modules/later/bfq.ko || { fail bfq-load "insmod bfq.ko failed"; return; }
	# iocost is still on, but the weight would go to io.bfq.weight.
	if out=$(clawrun --config io-agents.yaml run -d --name iow iow 2>&1); then
		fail io-weight-bfq-loaded-refused "strict io_weight ran with BFQ loaded and no disk on BFQ"
	elif printf '%s' "$out" | grep -q "limits.io_weight 200 cannot be enforced: the BFQ scheduler is loaded, so runc writes io.bfq.weight"; then
		pass io-weight-bfq-loaded-refused
	else
		fail io-weight-bfq-loaded-refused "$out"
	fi
	clawrun rm -f iow >/dev/null 2>&1
	echo bfq > /sys/block/nullb0/queue/scheduler
	if clawrun doctor 2>&1 | grep -q "^OK *io_weight *limits.io_weight is enforced by cgroup v2 io.bfq.weight on nullb0 (BFQ)"; then
		pass doctor-io-weight-bfq
	else
		fail doctor-io-weight-bfq "$(clawrun doctor 2>&1 | grep -A1 io_weight)"
	fi
	# BFQ takes the OCI weight as it is.
	io_weight_file io-weight-bfq io.bfq.weight "default 200"
	clawrun rm -f iow >/dev/null 2>&1
}

field() { # field NAME JSON: a number or string value
	printf '%s' "$2" | tr -d '\n' | grep -o "\"$1\": *[^,}]*" | head -n 1 | sed 's/^[^:]*: *//; s/"//g'
}

if [ "$mode" = bfq ]; then
	bfq
	exit 0
fi

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

# The host total (allowlist total:) on the parent cgroup cv2tot, which
# holds only these agents: /cv2tot as root, DELEGATED/cv2tot rootless.
cg=/sys/fs/cgroup
[ "$mode" = user ] && cg=/sys/fs/cgroup/user.slice/u1000
par=$cg/cv2tot
cat > total.yaml <<'YAML'
agent_dir: rw
cgroup_parent: cv2tot
total: {memory: 48M, cpus: 1, pids: 24}
YAML
cat > nototal.yaml <<'YAML'
agent_dir: rw
cgroup_parent: cv2tot
YAML
cat > total-agents.yaml <<'YAML'
agents:
  tota:
    rootfs: /rootfs
    command: ["/bin/sh", "-c", "i=0; while [ $i -lt 16 ]; do sleep 1000 & i=$((i+1)); done; wait"]
    limits: {pids: 64}
  totb:
    rootfs: /rootfs
    command: ["/bin/sleep", "1000"]
    limits: {pids: 64}
  tothog:
    rootfs: /rootfs
    command: ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=56M count=1; echo dd: $?"]
    limits: {memory: 64M}
YAML
export CLAWRUN_ALLOWLIST=$dir/total.yaml
ca() { clawrun --config total-agents.yaml "$@"; }
if out=$(ca run -d --name tota tota 2>&1) && out=$(ca run -d --name totb totb 2>&1); then
	got="$(cat $par/memory.max $par/memory.swap.max $par/cpu.max $par/pids.max 2>&1 | tr '\n' ' ')"
	if [ "$got" = "50331648 0 100000 100000 24 " ]; then
		pass total-written
	else
		fail total-written "$par memory.max, memory.swap.max, cpu.max, pids.max: $got"
	fi
	i=0
	while [ $i -lt 30 ] && [ "$(cat $par/tota/pids.current 2>/dev/null || echo 0)" -lt 17 ]; do
		sleep 1
		i=$((i + 1))
	done
	# totb may fork far below its own pids: 64, yet the total stops it.
	out=$(ca exec totb /bin/sh -c 'i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done' 2>&1)
	cur=$(cat $par/pids.current)
	if printf '%s' "$out" | grep -q -e "can't fork" -e "Resource temporarily unavailable" && [ "$cur" -le 24 ]; then
		pass total-pids-fork-storm
	else
		fail total-pids-fork-storm "parent pids.current $cur (tota $(cat $par/tota/pids.current)), exec: $(printf '%s' "$out" | tail -n 2)"
	fi
	ins=$(ca inspect totb 2>&1)
	if printf '%s' "$ins" | grep -q "pids=24 for all agents together" && printf '%s' "$ins" | grep -q "total.pids (cgroup .*cv2tot) *24 (ok)" && ! printf '%s' "$ins" | grep -q MISMATCH; then
		pass total-inspect-live
	else
		fail total-inspect-live "$ins"
	fi
	# What holds, not what was configured: a changed parent is a mismatch.
	echo 30 > $par/pids.max
	if ins=$(ca inspect totb 2>&1); then
		fail total-inspect-mismatch "inspect succeeded with pids.max 30: $ins"
	elif printf '%s' "$ins" | grep -q "total.pids (cgroup .*cv2tot) *30 (MISMATCH)"; then
		pass total-inspect-mismatch
	else
		fail total-inspect-mismatch "$ins"
	fi
	echo 24 > $par/pids.max
	js=$(clawrun stats --json 2>&1)
	if printf '%s' "$js" | tr -d '\n' | grep -q '"parent": *true'; then
		pass total-stats-parent
	else
		fail total-stats-parent "$js"
	fi
else
	fail total-written "run: $out"
fi
ca rm -f tota totb >/dev/null 2>&1

# A 56M buffer under the agent's own 64M but above the total's 48M.
if out=$(ca run -d --name tothog tothog 2>&1); then
	i=0
	while [ $i -lt 30 ] && ! clawrun ps 2>&1 | grep tothog | grep -q oom-killed; do
		sleep 1
		i=$((i + 1))
	done
	oom=$(sed -n 's/^oom_kill //p' $par/memory.events 2>/dev/null)
	if clawrun ps 2>&1 | grep tothog | grep -q oom-killed && [ "${oom:-0}" -gt 0 ]; then
		pass total-memory-oom-killed
	else
		fail total-memory-oom-killed "ps: $(clawrun ps 2>&1 | grep tothog); parent oom_kill '$oom'; logs: $(ca logs tothog 2>&1 | tail -n 2)"
	fi
else
	fail total-memory-oom-killed "run: $out"
fi
ca rm -f tothog >/dev/null 2>&1

# Without total in the allowlist the next run resets the parent.
export CLAWRUN_ALLOWLIST=$dir/nototal.yaml
out=$(ca run --name totc totb -- /bin/true 2>&1)
got="$(cat $par/memory.max $par/memory.swap.max $par/cpu.max $par/pids.max 2>&1 | tr '\n' ' ')"
if [ "$got" = "max max max 100000 max " ]; then
	pass total-reset
else
	fail total-reset "$par after a run without total: $got (run: $out)"
fi
ca rm -f totc >/dev/null 2>&1
unset CLAWRUN_ALLOWLIST
rmdir $par 2>/dev/null

# limits.io_weight. This kernel has the io controller and blk-iocost but
# its disks (null_blk here, loaded by init) run without BFQ: until iocost
# is enabled on one, io.weight does nothing and a strict run is refused.
if ! grep -q 'enable=1' /sys/fs/cgroup/io.cost.qos; then
	if clawrun doctor 2>&1 | grep -q "^WARN *io_weight *limits.io_weight cannot be enforced: no block device uses the BFQ scheduler and blk-iocost is not enabled"; then
		pass doctor-io-weight-warn
	else
		fail doctor-io-weight-warn "$(clawrun doctor 2>&1 | grep -A1 io_weight)"
	fi
	if out=$(clawrun --config io-agents.yaml run -d --name iow iow 2>&1); then
		fail io-weight-refused "strict io_weight ran without iocost or BFQ"
	elif printf '%s' "$out" | grep -q "limits.io_weight 200 cannot be enforced: no block device uses the BFQ scheduler and blk-iocost is not enabled"; then
		pass io-weight-refused
	else
		fail io-weight-refused "$out"
	fi
	clawrun rm -f iow >/dev/null 2>&1
	if [ "$mode" = root ] && [ -e /sys/block/nullb0/dev ]; then
		echo "$(cat /sys/block/nullb0/dev) enable=1" > /sys/fs/cgroup/io.cost.qos || fail io-weight "enabling iocost on nullb0 failed"
	fi
fi
if grep -q 'enable=1' /sys/fs/cgroup/io.cost.qos; then
	if clawrun doctor 2>&1 | grep -q "^OK *io_weight *limits.io_weight is enforced by cgroup v2 io.weight (blk-iocost"; then
		pass doctor-io-weight-ok
	else
		fail doctor-io-weight-ok "$(clawrun doctor 2>&1 | grep -A1 io_weight)"
	fi
	# runc converts the OCI blkio weight 10..1000 to io.weight 1..10000:
	# 1 + (200-10)*9999/990 = 1920.
	io_weight_file io-weight-converted io.weight "default 1920"
	ins=$(clawrun inspect iow 2>&1)
	if printf '%s' "$ins" | grep -q "io_weight=200 enforced by cgroup" && ! printf '%s' "$ins" | grep -q "NOT ENFORCED"; then
		pass io-weight-inspect
	else
		fail io-weight-inspect "$ins"
	fi
	clawrun rm -f iow >/dev/null 2>&1
else
	fail io-weight-converted "iocost could not be enabled: $(cat /sys/fs/cgroup/io.cost.qos 2>&1)"
fi
exit 0
