package runtime

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/clawrun/clawrun/policy"
)

func describeTestPlan(t *testing.T, cgroupsPath string) *Report {
	t.Helper()
	p := testPlan()
	id := testIdentity()
	s, err := Spec(p, id, cgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	return Describe("rev-1", &Prepared{Plan: p, Identity: id, CgroupsPath: cgroupsPath, Spec: s})
}

func linesOf(r *Report, kind string) []string {
	var out []string
	for _, l := range r.Lines {
		if l.Kind == kind {
			out = append(out, l.Value)
		}
	}
	return out
}

func TestDescribe(t *testing.T) {
	r := describeTestPlan(t, "/clawrun/rev-1")
	if r.Name != "rev-1" {
		t.Errorf("name %q", r.Name)
	}
	one := func(kind string) string {
		t.Helper()
		v := linesOf(r, kind)
		if len(v) != 1 {
			t.Errorf("%d %q lines, want 1: %q", len(v), kind, v)
			return ""
		}
		return v[0]
	}
	contains := func(kind, got string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s line %q lacks %q", kind, got, w)
			}
		}
	}

	contains("source", one("source"), "/home/u/agents/clawrun.yaml", "agent reviewer")
	contains("rootfs", one("rootfs"), "/var/lib/clawrun/rootfs/alpine", "read-only: true")
	contains("command", one("command"), `"/bin/agent"`, `"--once"`)
	contains("workdir", one("workdir"), "/work")
	if env := linesOf(r, "env"); !slices.Equal(env, testPlan().Env) {
		t.Errorf("env lines %q", env)
	}
	contains("user", one("user"), "1000:1000 inside", "host uid 1234 gid 1234")
	contains("idmap", one("idmap"), "subordinate")
	uidmap := linesOf(r, "uidmap")
	wantUIDMap := []string{
		"container 0-999 -> host 100000-100999",
		"container 1000-1000 -> host 1234-1234",
		"container 1001-65535 -> host 101000-165534",
	}
	if !slices.Equal(uidmap, wantUIDMap) {
		t.Errorf("uidmap lines %q, want %q", uidmap, wantUIDMap)
	}
	if n := len(linesOf(r, "gidmap")); n != 3 {
		t.Errorf("%d gidmap lines, want 3", n)
	}

	ns := linesOf(r, "namespace")
	wantNS := []string{"user (new)", "mount (new)", "pid (new)", "ipc (new)", "uts (new)", "cgroup (new)", "network (new)"}
	if !slices.Equal(ns, wantNS) {
		t.Errorf("namespace lines %q, want %q", ns, wantNS)
	}
	contains("network", one("network"), "none", "loopback only")
	if h := one("hostname"); h != "reviewer" {
		t.Errorf("hostname line %q", h)
	}
	if c := one("capabilities"); c != "effective=none permitted=none bounding=none ambient=none" {
		t.Errorf("capabilities line %q", c)
	}
	if v := one("no_new_privileges"); v != "true" {
		t.Errorf("no_new_privileges line %q", v)
	}

	grants := linesOf(r, "grant")
	if len(grants) != 2 {
		t.Fatalf("grant lines %q, want 2", grants)
	}
	contains("grant", grants[0], "/work bind <- /home/u/project", "rw")
	contains("grant", grants[1], "/docs bind <- /home/u/docs", "ro", "rro")
	mounts := linesOf(r, "mount")
	if len(mounts) != 7 { // six system mounts and /tmp
		t.Errorf("mount lines %q, want 7", mounts)
	}
	if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(m, "/tmp tmpfs") && strings.Contains(m, "size=33554432") }) {
		t.Errorf("no /tmp line with the plan's size in %q", mounts)
	}

	if m := linesOf(r, "masked"); !slices.Equal(m, MaskedPaths) {
		t.Errorf("masked lines %q", m)
	}
	if ro := linesOf(r, "readonly"); !slices.Equal(ro, ReadonlyPaths) {
		t.Errorf("readonly lines %q", ro)
	}
	sc := linesOf(r, "seccomp")
	if len(sc) < 2 || sc[0] != `profile "default"` || !slices.ContainsFunc(sc, func(l string) bool { return strings.HasPrefix(l, "default action:") }) {
		t.Errorf("seccomp lines %q", sc)
	}
	contains("limits", one("limits"), "memory=268435456 bytes (swap off)", "cpus=0.50 (quota 50000us per 100000us)", "pids=64", "/clawrun/rev-1")
	if c := one("cgroup"); c != "/clawrun/rev-1" {
		t.Errorf("cgroup line %q", c)
	}

	// The report is what `inspect --json` prints.
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestDescribeSingleNoLimits(t *testing.T) {
	p := testPlan()
	p.Source = ""
	p.Limits.MemoryBytes, p.Limits.CPUs, p.Limits.Pids = 0, 0, 0
	p.Grants = nil
	id := &Identity{Kind: "single", HostUID: 1234, HostGID: 1234}
	id.UIDMappings = outerMap(1234, SubRange{})[:1]
	id.GIDMappings = id.UIDMappings
	s, err := Spec(p, id, "")
	if err != nil {
		t.Fatal(err)
	}
	r := Describe("adhoc", &Prepared{Plan: p, Identity: id, Spec: s})
	if v := linesOf(r, "source"); v != nil {
		t.Errorf("source lines %q for an ad-hoc run", v)
	}
	if v := linesOf(r, "idmap"); len(v) != 1 || !strings.Contains(v[0], "single-id map") {
		t.Errorf("idmap lines %q", v)
	}
	if v := linesOf(r, "uidmap"); !slices.Equal(v, []string{"container 0-0 -> host 1234-1234"}) {
		t.Errorf("uidmap lines %q", v)
	}
	if v := linesOf(r, "grant"); v != nil {
		t.Errorf("grant lines %q without grants", v)
	}
	if v := linesOf(r, "limits"); !slices.Equal(v, []string{"none declared"}) {
		t.Errorf("limits lines %q", v)
	}
	if v := linesOf(r, "cgroup"); len(v) != 1 || !strings.HasPrefix(v[0], "none of its own") {
		t.Errorf("cgroup lines %q", v)
	}
}

// TestLiveChecksSelf runs the checks against the test process itself: it
// shares every namespace with "clawrun" (us) and has no seccomp filter, so
// the checks must fail. This proves a mismatch is reported, never passed.
func TestLiveChecksSelf(t *testing.T) {
	st, err := procStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	checks := LiveChecks(os.Getpid(), nil)
	byProp := map[string]Check{}
	for _, c := range checks {
		byProp[c.Property] = c
		if c.OK != (c.Expected == c.Actual) {
			t.Errorf("check %+v: OK disagrees with expected/actual", c)
		}
	}
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "cgroup", "net"} {
		c, ok := byProp["namespace "+ns]
		if !ok {
			t.Errorf("no check for namespace %s", ns)
			continue
		}
		if c.OK || c.Actual != "shared with clawrun" {
			t.Errorf("namespace %s: %+v, want a failed check (shared)", ns, c)
		}
	}
	want := map[string]string{"NoNewPrivs": "1", "CapEff": "0000000000000000", "CapPrm": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000"}
	for prop, exp := range want {
		c, ok := byProp[prop]
		if !ok {
			t.Errorf("no %s check", prop)
			continue
		}
		if c.Expected != exp || c.Actual != st[prop] {
			t.Errorf("%s check %+v, want expected %q actual %q", prop, c, exp, st[prop])
		}
	}
	c := byProp["Seccomp (/proc status)"]
	if c.Expected != "2" || c.Actual != st["Seccomp"] {
		t.Errorf("seccomp check %+v, /proc says %q", c, st["Seccomp"])
	}
	if st["Seccomp"] != "2" && c.OK {
		t.Errorf("seccomp check passes without a filter: %+v", c)
	}
	if len(checks) != 2+4+7 {
		t.Errorf("%d checks, want 13", len(checks))
	}
	if !slices.ContainsFunc(checks, func(c Check) bool { return !c.OK }) {
		t.Error("every check passes for a process that is not sandboxed")
	}
}

func TestLiveChecksNoProcess(t *testing.T) {
	checks := LiveChecks(-1, nil)
	if len(checks) != 1 || checks[0].OK || checks[0].Property != "process" || !strings.Contains(checks[0].Expected, "/proc/-1") {
		t.Errorf("checks %+v, want one failed process check", checks)
	}
}

func TestProcStatus(t *testing.T) {
	pid := os.Getpid()
	st, err := procStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st["Pid"] != strconv.Itoa(pid) {
		t.Errorf("Pid %q, want %d", st["Pid"], pid)
	}
	if st["Name"] == "" {
		t.Error("no Name")
	}
	for _, k := range []string{"Seccomp", "NoNewPrivs", "CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		v, ok := st[k]
		if !ok {
			t.Errorf("key %s missing", k)
		}
		if v != strings.TrimSpace(v) || v == "" {
			t.Errorf("key %s value %q: not trimmed or empty", k, v)
		}
	}
	if len(st["CapEff"]) != 16 {
		t.Errorf("CapEff %q is not 16 hex digits", st["CapEff"])
	}
	if _, err := procStatus(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestCapMask(t *testing.T) {
	cases := []struct {
		names []string
		want  string
	}{
		{nil, "0000000000000000"},
		{[]string{"CAP_CHOWN"}, "0000000000000001"},
		{[]string{"CAP_NET_BIND_SERVICE", "CAP_KILL"}, "0000000000000420"},
		{[]string{"cap_sys_admin"}, "0000000000200000"},
	}
	for _, tc := range cases {
		if got := capMask(tc.names); got != tc.want {
			t.Errorf("capMask(%v) = %s, want %s", tc.names, got, tc.want)
		}
	}
}

// procHex renders an IPv4 address as /proc/net/{tcp,route} print it.
func procHex(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b[:]))
}

func TestLoopbackListeners(t *testing.T) {
	dir := t.TempDir()
	lo, ten := procHex(netip.MustParseAddr("127.0.0.1")), procHex(netip.MustParseAddr("10.0.0.1"))
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: " + lo + ":0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 111 1 0 100 0 0 10 0\n" + // 127.0.0.1:3128 LISTEN
		"   1: " + lo + ":0C39 " + lo + ":9C40 01 00000000:00000000 00:00000000 00000000  1001        0 112 1 0 100 0 0 10 0\n" + // 3129 ESTABLISHED
		"   2: " + ten + ":0C3A 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 113 1 0 100 0 0 10 0\n" // 10.0.0.1:3130
	mapped := "0000000000000000" + procHex(netip.AddrFrom4([4]byte{0, 0, 0xff, 0xff})) + lo
	tcp6 := "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000000000000000000000000000:0C3B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 114 1 0 100 0 0 10 0\n" + // [::]:3131
		"   1: " + mapped + ":0C3C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 115 1 0 100 0 0 10 0\n" // [::ffff:127.0.0.1]:3132
	for name, s := range map[string]string{"tcp": tcp, "tcp6": tcp6} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := loopbackListeners(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{3128: "111", 3131: "114", 3132: "115"}
	if !maps.Equal(got, want) {
		t.Errorf("listeners %v, want %v (not the established socket, not 10.0.0.1)", got, want)
	}
	// Without IPv6 there is no tcp6; tcp alone is enough.
	if err := os.Remove(filepath.Join(dir, "tcp6")); err != nil {
		t.Fatal(err)
	}
	if got, err := loopbackListeners(dir); err != nil || len(got) != 1 {
		t.Errorf("without tcp6: %v, %v", got, err)
	}
}

func TestNetRoutes(t *testing.T) {
	dir := t.TempDir()
	zero, gw, mask := procHex(netip.MustParseAddr("0.0.0.0")), procHex(netip.MustParseAddr("10.0.2.2")), procHex(netip.MustParseAddr("255.255.255.0"))
	route := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t" + zero + "\t" + gw + "\t0003\t0\t0\t0\t" + zero + "\t0\t0\t0\n" +
		"eth0\t" + procHex(netip.MustParseAddr("10.0.2.0")) + "\t" + zero + "\t0001\t0\t0\t0\t" + mask + "\t0\t0\t0\n"
	v6 := "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n" +
		"fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("route", route)
	write("ipv6_route", v6)
	got, err := netRoutes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0.0.0.0/0 via 10.0.2.2 dev eth0", "10.0.2.0/24 via 0.0.0.0 dev eth0", "fd00::/64 dev eth0"}
	if !slices.Equal(got, want) {
		t.Errorf("routes %q, want %q (lo's own IPv6 routes left out)", got, want)
	}
	// An isolated namespace: an empty main table, IPv6 on lo only (or off).
	write("route", strings.SplitAfter(route, "\n")[0])
	write("ipv6_route", strings.SplitAfter(v6, "\n")[0])
	if got, err := netRoutes(dir); err != nil || len(got) != 0 {
		t.Errorf("loopback only: %q, %v", got, err)
	}
	if err := os.Remove(filepath.Join(dir, "ipv6_route")); err != nil {
		t.Fatal(err)
	}
	if got, err := netRoutes(dir); err != nil || len(got) != 0 {
		t.Errorf("without IPv6: %q, %v", got, err)
	}
}

// TestNetworkChecksNetns runs the checks against a real process in network
// and pid namespaces of its own (root only: creating them needs
// CAP_SYS_ADMIN; test/egress_test.go covers rootless containers): no
// listener is a mismatch, a listener of this process (outside its pid
// namespace, as clawrun's proxy is) passes, and the checks of the host's
// own namespace show its interfaces as a mismatch.
func TestNetworkChecksNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root; the integration suite checks rootless containers")
	}
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	p := &policy.Plan{Network: policy.NetworkEgress, Egress: []string{"example.com:443"}}
	byProp := func(cs []Check) map[string]Check {
		m := map[string]Check{}
		for _, c := range cs {
			if c.OK != (c.Expected == c.Actual) {
				t.Errorf("check %+v: OK disagrees with expected/actual", c)
			}
			m[c.Property] = c
		}
		return m
	}
	const proxy = "egress proxy 127.0.0.1:3128 (HTTP_PROXY)"
	got := byProp(NetworkChecks(pid, p))
	if c := got["network interfaces"]; !c.OK || c.Actual != "lo" {
		t.Errorf("interfaces of a new namespace: %+v", c)
	}
	if c := got["routes out of loopback"]; !c.OK {
		t.Errorf("routes of a new namespace: %+v", c)
	}
	if c := got[proxy]; c.OK || !strings.HasPrefix(c.Actual, "not listening") {
		t.Errorf("no listener must be a mismatch: %+v", c)
	}
	ls, err := listenInNetns(pid, []string{"127.0.0.1:3128"})
	if err != nil {
		t.Fatal(err)
	}
	defer ls[0].Close()
	if c := byProp(NetworkChecks(pid, p))[proxy]; !c.OK {
		t.Errorf("the proxy's listener: %+v", c)
	}
	// Without egress there is no proxy check; the host's own namespace is
	// not loopback-only.
	host := byProp(NetworkChecks(os.Getpid(), &policy.Plan{Network: policy.NetworkNone}))
	if _, ok := host[proxy]; ok {
		t.Error("a proxy check without egress")
	}
	if ifs, _ := netInterfaces("/proc/self/net/dev"); len(ifs) > 1 && host["network interfaces"].OK {
		t.Errorf("the host's interfaces %v pass as loopback only", ifs)
	}
	if NetworkChecks(os.Getpid(), &policy.Plan{Network: policy.NetworkHost}) != nil {
		t.Error("checks for a host-network agent, which shares the host's namespace by design")
	}
}
