package hostcheck

import (
	"strings"
	"testing"

	cgroupsv3 "github.com/containerd/cgroups/v3"
)

// io_weight acts only where a weight does something: CFQ's blkio.weight,
// a disk on BFQ, or cgroup v2 io.weight with blk-iocost enabled. Each case
// lays out that host in the fake tree; the cgroup v2 VM
// (scripts/cgroupv2/run.sh) checks a real kernel with iocost.
func TestIOWeight(t *testing.T) {
	for _, c := range []struct {
		name   string
		mode   cgroupsv3.CGMode
		uid    int
		files  map[string]string
		status Status
		want   string
	}{
		{"v2 root, no BFQ, no iocost", cgroupsv3.Unified, 0, nil, Warn, "blk-iocost is not enabled (io.cost.qos)"},
		{"v2 root, iocost", cgroupsv3.Unified, 0, map[string]string{"sys/fs/cgroup/io.cost.qos": "252:0 enable=1 ctrl=auto rpct=0.00\n"}, OK, "io.weight (blk-iocost enabled"},
		{"v2 root, iocost off", cgroupsv3.Unified, 0, map[string]string{"sys/fs/cgroup/io.cost.qos": "252:0 enable=0 ctrl=auto\n"}, Warn, "blk-iocost is not enabled"},
		{"v2 root, iocost but BFQ loaded", cgroupsv3.Unified, 0, map[string]string{"sys/fs/cgroup/io.cost.qos": "252:0 enable=1\n", "sys/block/vda/queue/scheduler": "[none] mq-deadline bfq\n"}, Warn, "runc writes io.bfq.weight (not io.weight"},
		{"v2 root, BFQ disk", cgroupsv3.Unified, 0, map[string]string{"sys/block/vda/queue/scheduler": "mq-deadline [bfq] none\n"}, OK, "io.bfq.weight on vda (BFQ)"},
		{"v2 root, no io controller", cgroupsv3.Unified, 0, map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n"}, Warn, "io controller is not available"},
		{"v2 rootless, nothing delegated", cgroupsv3.Unified, 4242, nil, Warn, "no cgroup v2 subtree is delegated to you"},
		{"v1 root, CFQ", cgroupsv3.Hybrid, 0, map[string]string{"sys/fs/cgroup/blkio/blkio.weight": "500\n"}, OK, "blkio.weight (CFQ)"},
		{"v1 root, BFQ disk", cgroupsv3.Legacy, 0, map[string]string{"sys/fs/cgroup/blkio/blkio.bfq.weight": "100\n", "sys/block/sda/queue/scheduler": "[bfq] none\n"}, OK, "blkio.bfq.weight on sda"},
		{"v1 root, no CFQ or BFQ", cgroupsv3.Hybrid, 0, map[string]string{"sys/fs/cgroup/blkio/blkio.bfq.weight": "100\n", "sys/block/sda/queue/scheduler": "[mq-deadline] none\n"}, Warn, "CFQ is gone from this kernel"},
		{"v1 root, no blkio", cgroupsv3.Hybrid, 0, nil, Warn, "blkio controller is not mounted"},
		{"v1 rootless", cgroupsv3.Hybrid, 4242, map[string]string{"sys/fs/cgroup/blkio/blkio.weight": "500\n"}, Warn, "rootless on cgroup v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := fakeHost(t)
			h.CgroupMode, h.UID = c.mode, c.uid
			write(t, h.Root, c.files)
			r, _, _ := IOWeightCheck(h)
			expect(t, r, c.status, c.want)
			if c.status == Warn && r.Fix == "" {
				t.Fatalf("a WARN without a fix: %+v", r)
			}
			rep := Run(h)
			if rep.Limits.IO != (c.status == OK) || !strings.Contains(rep.Limits.IOWhy, c.want) {
				t.Fatalf("Run limits %+v, want io %v (%s)", rep.Limits, c.status == OK, c.want)
			}
		})
	}
}

// Rootless on v2 io must be delegated too, not just present at the root.
func TestIOWeightDelegation(t *testing.T) {
	h := fakeHost(t)
	if h.UID == 0 {
		t.Skip("the fake delegated tree belongs to the test user, who must not be root")
	}
	write(t, h.Root, map[string]string{"sys/fs/cgroup/io.cost.qos": "252:0 enable=1\n"})
	r, _, _ := IOWeightCheck(h)
	expect(t, r, Warn, "io controller is not delegated to you")
	write(t, h.Root, map[string]string{"sys/fs/cgroup/user@1000.service/cgroup.controllers": "cpu io memory pids\n"})
	r, _, _ = IOWeightCheck(h)
	expect(t, r, OK, "blk-iocost enabled")
}
