package hostcheck

import (
	"os"
	"path/filepath"
	"strings"

	cgroupsv3 "github.com/containerd/cgroups/v3"
)

// IOWeight says whether an agent's limits.io_weight acts on this host for
// this user: how (mech) when it does, why not and the fix when it does
// not. A weight file is not enough: cgroup v1's blkio.bfq.weight and v2's
// io.bfq.weight act only on devices the BFQ scheduler runs, and v2's
// io.weight only where blk-iocost is enabled (io.cost.qos). runc writes
// the legacy CFQ blkio.weight where it exists, else the BFQ file, else
// io.weight. The runtime asks the same question before each run, so
// doctor and a refused run agree.
func IOWeight(h *Host) (ok bool, mech, why, fix string) {
	mount := h.path(cgroupRoot)
	bfq, bfqLoaded := bfqDevices(h)
	bfqFix := "select BFQ for the agents' disk (as root: modprobe bfq; echo bfq > /sys/block/DEV/queue/scheduler)"
	switch h.CgroupMode {
	case cgroupsv3.Legacy, cgroupsv3.Hybrid:
		if h.rootless() {
			return false, "", "rootless on cgroup v1 an agent has no cgroup of its own, and no rlimit weighs block I/O", "run as root, or use a cgroup v2 host with the io controller delegated"
		}
		if _, err := os.Stat(filepath.Join(mount, "blkio")); err != nil {
			return false, "", "the cgroup v1 blkio controller is not mounted", "mount the blkio controller (every systemd host does)"
		}
		if _, err := os.Stat(filepath.Join(mount, "blkio", "blkio.weight")); err == nil {
			return true, "cgroup v1 blkio.weight (CFQ)", "", ""
		}
		if len(bfq) > 0 {
			return true, "cgroup v1 blkio.bfq.weight on " + strings.Join(bfq, ", ") + " (BFQ)", "", ""
		}
		return false, "", "cgroup v1 blkio has no blkio.weight (CFQ is gone from this kernel) and no block device uses the BFQ scheduler, so blkio.bfq.weight would do nothing",
			bfqFix + ", or use a cgroup v2 host with the io controller"
	case cgroupsv3.Unified:
	default:
		return false, "", "no cgroup hierarchy at /sys/fs/cgroup", "mount cgroup2 on /sys/fs/cgroup"
	}
	var ctrls []string
	if h.rootless() {
		d, err := FindDelegation(h.Root, h.UID)
		if err != nil {
			return false, "", "no cgroup v2 subtree is delegated to you", delegationFix
		}
		ctrls = d.All
	} else {
		s, _ := h.readTrim(filepath.Join(cgroupRoot, "cgroup.controllers"))
		ctrls = strings.Fields(s)
	}
	if len(intersect(ctrls, "io")) == 0 {
		if h.rootless() {
			return false, "", "the cgroup v2 io controller is not delegated to you", delegationFix
		}
		return false, "", "the cgroup v2 io controller is not available", "enable CONFIG_BLK_CGROUP in the kernel"
	}
	if len(bfq) > 0 {
		return true, "cgroup v2 io.bfq.weight on " + strings.Join(bfq, ", ") + " (BFQ)", "", ""
	}
	qos, _ := h.readTrim(filepath.Join(cgroupRoot, "io.cost.qos"))
	iocost := strings.Contains(qos, "enable=1")
	if iocost && bfqLoaded {
		// BFQ, once registered, adds io.bfq.weight to every cgroup, and
		// runc then writes the weight there instead of io.weight.
		return false, "", "the BFQ scheduler is loaded, so runc writes io.bfq.weight (not io.weight, which blk-iocost would honour), and no block device uses BFQ",
			bfqFix + ", or unload BFQ (as root: rmmod bfq) so that io.weight is used"
	}
	if iocost {
		return true, "cgroup v2 io.weight (blk-iocost enabled in io.cost.qos)", "", ""
	}
	return false, "", "no block device uses the BFQ scheduler and blk-iocost is not enabled (io.cost.qos), so io.weight would do nothing",
		bfqFix + ", or enable blk-iocost (as root: echo 'MAJ:MIN enable=1' > /sys/fs/cgroup/io.cost.qos)"
}

// bfqDevices lists the block devices whose active scheduler is BFQ;
// loaded says whether BFQ is registered at all: it is then listed, active
// or not, in each blk-mq device's scheduler file.
func bfqDevices(h *Host) (active []string, loaded bool) {
	matches, _ := filepath.Glob(h.path("/sys/block/*/queue/scheduler"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil || !strings.Contains(string(b), "bfq") {
			continue
		}
		loaded = true
		if strings.Contains(string(b), "[bfq]") {
			active = append(active, filepath.Base(filepath.Dir(filepath.Dir(m))))
		}
	}
	return active, loaded
}

// IOWeightCheck is doctor's io_weight line: WARN with the fix where an
// agent's io_weight would be refused (or, with best-effort, shown as NOT
// ENFORCED). how is the mechanism when enforced, else why not, for the
// limits summary.
func IOWeightCheck(h *Host) (r Result, enforced bool, how string) {
	r = Result{Check: "io_weight"}
	ok, mech, why, fix := IOWeight(h)
	if ok {
		r.Detail = "limits.io_weight is enforced by " + mech
		return r, true, mech
	}
	r.Status, r.Detail, r.Fix = Warn, "limits.io_weight cannot be enforced: "+why+"; agents that set it are refused unless limits.enforce: best-effort", fix
	return r, false, why
}
