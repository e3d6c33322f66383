#!/bin/sh
# make test-cgroupv2: run clawrun's limit tests on cgroup v2, root and
# rootless with a delegated subtree, in a small qemu VM. The machines here
# are cgroup v1 and their hierarchy is the machine's own, so the tests boot
# a Debian kernel (downloaded with apt-get download and extracted, never
# installed) with an initramfs that carries clawrun, a busybox rootfs and
# scripts/cgroupv2/{init,run.sh}. Results come back on the serial console
# as "PASS name" / "FAIL name: why". No network in the VM.
#
# Environment: CLAWRUN_V2_WORK (work dir, default .cgroupv2; the kernel is
# cached there), CLAWRUN_V2_TIMEOUT (seconds, default 900),
# CLAWRUN_V2_KERNEL_PKG (default linux-image-cloud-amd64).
set -eu

BIN=${BIN:-bin}
WORK=${CLAWRUN_V2_WORK:-.cgroupv2}
TIMEOUT=${CLAWRUN_V2_TIMEOUT:-900}
KPKG=${CLAWRUN_V2_KERNEL_PKG:-linux-image-cloud-amd64}
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "test-cgroupv2: $*" >&2; exit 1; }

for f in "$BIN/clawrun" "$BIN/echo-agent"; do
	[ -x "$f" ] || die "$f missing: run 'make build' first"
done
need() { # need PACKAGE COMMAND
	command -v "$2" >/dev/null 2>&1 && return 0
	[ "$(id -u)" -eq 0 ] || die "$2 missing (as root: apt-get install $1)"
	echo "test-cgroupv2: installing $1"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
need qemu-system-x86 qemu-system-x86_64
need cpio cpio
# A static busybox: the VM has no libc of its own for it.
if ! dpkg -s busybox-static >/dev/null 2>&1; then
	[ "$(id -u)" -eq 0 ] || die "busybox-static missing (as root: apt-get install busybox-static)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
BUSYBOX=/bin/busybox
command -v newuidmap >/dev/null 2>&1 || need uidmap newuidmap

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# The kernel: the metapackage names the versioned image package.
if ! ls "$WORK"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
	pkg=$KPKG
	dep=$(apt-cache depends "$KPKG" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
	[ -n "$dep" ] && pkg=$dep
	echo "test-cgroupv2: fetching $pkg (extracted into $WORK/kernel, not installed)"
	rm -rf "$WORK/deb" "$WORK/kernel"
	mkdir -p "$WORK/deb"
	(cd "$WORK/deb" && apt-get download "$pkg" >/dev/null 2>&1) || {
		apt-get update -qq 2>/dev/null || true
		(cd "$WORK/deb" && apt-get download "$pkg" >/dev/null)
	} || die "apt-get download $pkg failed"
	dpkg-deb -x "$WORK"/deb/*.deb "$WORK/kernel"
fi
VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n 1)
KVER=${VMLINUZ##*/vmlinuz-}

# The initramfs.
IR=$WORK/initramfs
rm -rf "$IR"
mkdir -p "$IR/bin" "$IR/usr/bin" "$IR/etc" "$IR/tests" "$IR/modules" "$IR/rootfs/bin"
cp "$BUSYBOX" "$IR/bin/busybox"
cp "$BIN/clawrun" "$IR/bin/clawrun"
cp "$BIN/echo-agent" "$IR/bin/echo-agent"
for t in newuidmap newgidmap; do
	cp "$(command -v $t)" "$IR/usr/bin/$t"
	chmod 4755 "$IR/usr/bin/$t"
done
# Shared libraries as ldd lists them, the loader included.
for b in "$BIN/clawrun" "$(command -v newuidmap)" "$(command -v newgidmap)"; do
	ldd "$b" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'
done | sort -u | while read -r lib; do
	mkdir -p "$IR$(dirname "$lib")"
	cp -L "$lib" "$IR$lib"
done
# overlayfs is a module in Debian kernels; clawrun uses it where it can.
# null_blk (with configfs, which it needs; init loads them in name order)
# gives the VM a blk-mq disk on which run.sh enables blk-iocost, so that
# io.weight acts and limits.io_weight can be tested enforced.
# BFQ waits in modules/later: run.sh loads it for its last stage only,
# because once registered it takes the weight from blk-iocost.
mkdir -p "$IR/modules/later"
for m in overlay configfs null_blk bfq; do
	to=$IR/modules
	[ $m = bfq ] && to=$IR/modules/later
	find "$WORK/kernel/lib/modules/$KVER" -name "$m.ko*" -exec cp {} "$to/" \; 2>/dev/null || true
done
for m in "$IR"/modules/*.ko.xz "$IR"/modules/later/*.ko.xz; do [ -e "$m" ] && xz -d "$m"; done
for m in "$IR"/modules/*.ko.zst "$IR"/modules/later/*.ko.zst; do [ -e "$m" ] && zstd -q -d --rm "$m"; done
printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n' > "$IR/etc/passwd"
printf 'root:x:0:\nagent:x:1000:\n' > "$IR/etc/group"
echo 'agent:100000:65536' > "$IR/etc/subuid"
echo 'agent:100000:65536' > "$IR/etc/subgid"
# The agents' root filesystem: busybox and the example agent.
cp "$BUSYBOX" "$IR/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
	[ "$a" = busybox ] || ln -s busybox "$IR/rootfs/bin/$a"
done
cp "$BIN/echo-agent" "$IR/rootfs/agent"
mkdir -p "$IR/rootfs/proc" "$IR/rootfs/dev" "$IR/rootfs/sys" "$IR/rootfs/tmp" "$IR/rootfs/etc"
cp "$HERE/cgroupv2/init" "$IR/init"
cp "$HERE/cgroupv2/run.sh" "$IR/tests/run.sh"
chmod 755 "$IR/init" "$IR/tests/run.sh" "$IR/rootfs"
(cd "$IR" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$WORK/initramfs.gz"

# KVM where it works: a kernel boot without an initramfs must reach its
# banner (then it panics and the VM ends). Nested KVM often does not (MSR
# errors, silent hangs); TCG always does, slower.
ACCEL="-accel tcg -cpu max"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	for a in "-enable-kvm -cpu host" "-enable-kvm -cpu qemu64"; do
		# shellcheck disable=SC2086
		if { timeout 20 qemu-system-x86_64 $a -m 256 -kernel "$VMLINUZ" -append "console=ttyS0 panic=-1" \
			-nic none -display none -monitor none -serial stdio -no-reboot </dev/null |
			grep -q 'Linux version'; } 2>/dev/null; then
			ACCEL=$a
			break
		fi
	done
fi
LOG=$WORK/console.log
echo "test-cgroupv2: booting $KVER ($ACCEL), console in $LOG, timeout ${TIMEOUT}s"
start=$(date +%s)
set +e
# shellcheck disable=SC2086
timeout "$TIMEOUT" qemu-system-x86_64 $ACCEL -m 1024 -smp 2 \
	-kernel "$VMLINUZ" -initrd "$WORK/initramfs.gz" \
	-append "console=ttyS0 panic=-1 loglevel=3" \
	-nic none -display none -monitor none -serial stdio -no-reboot \
	</dev/null | tr -d '\r' | tee "$LOG" | grep -E '^(PASS|FAIL|===|cgroupv2-vm)'
rc=$?
set -e
elapsed=$(($(date +%s) - start))
passed=$(grep -c '^PASS ' "$LOG" || true)
failed=$(grep -c '^FAIL ' "$LOG" || true)
echo "cgroupv2: $passed passed, $failed failed (${elapsed}s)"
if ! grep -q '^=== cgroupv2 tests done' "$LOG"; then
	echo "test-cgroupv2: the VM did not finish the tests (timeout or crash); see $LOG" >&2
	exit 1
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] || exit 1
