package runtime

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/clawrun/clawrun/policy"
)

// The live network checks of inspect read the container's network
// namespace through /proc/PID/net of its init: those files show the
// namespace of the process they belong to, not the reader's. They need no
// setns (which a rootless inspect could not do: joining a network namespace
// takes CAP_SYS_ADMIN in the caller's own user namespace) and are readable
// by the invoking user both as root and rootless, because the container's
// user namespace is owned by that user (through the outer one, rootless)
// and so passes the kernel's ptrace-read check.

// NetworkChecks compares the live network namespace of the container whose
// init is pid with the plan: without unsafe_host_network it has no
// interface but lo and no route; with egress, the proxy listens on
// 127.0.0.1:3128 and on each base-URL port, and no process of the
// container holds those sockets (an agent that bound the port after the
// proxy died would otherwise look like the proxy).
func NetworkChecks(pid int, p *policy.Plan) []Check {
	if p.Network == policy.NetworkHost {
		return nil
	}
	proc := fmt.Sprintf("/proc/%d", pid)
	var out []Check
	check := func(prop, expected, actual string) {
		out = append(out, Check{Property: prop, Expected: expected, Actual: actual, OK: expected == actual})
	}
	ifaces, err := netInterfaces(proc + "/net/dev")
	if err != nil {
		check("network interfaces", "lo", "unreadable: "+err.Error())
	} else {
		check("network interfaces", "lo", strings.Join(ifaces, ","))
	}
	routes, err := netRoutes(proc + "/net")
	if err != nil {
		routes = []string{"unreadable: " + err.Error()}
	}
	check("routes out of loopback", "none", orNone(routes))
	if p.Network != policy.NetworkEgress {
		return out
	}
	listening, err := loopbackListeners(proc + "/net")
	if err != nil {
		check("egress proxy", "listening", "unreadable: "+err.Error())
		return out
	}
	held := containerSockets(pid)
	ports := baseURLPorts(p)
	type want struct {
		port int
		what string
	}
	wants := []want{{EgressProxyPort, "HTTP_PROXY"}}
	for _, s := range p.Secrets {
		if port, ok := ports[s.Name]; ok {
			wants = append(wants, want{port, s.BaseURLEnv})
		}
	}
	for _, w := range wants {
		actual := "not listening (the proxy is gone: restart the agent)"
		if inode, ok := listening[w.port]; ok {
			actual = "listening"
			if held[inode] {
				actual = "listening, but held by a process inside the container, not by clawrun's proxy"
			}
		}
		check(fmt.Sprintf("egress proxy 127.0.0.1:%d (%s)", w.port, w.what), "listening", actual)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// netInterfaces lists the interfaces of a /proc/PID/net/dev.
func netInterfaces(path string) ([]string, error) {
	var names []string
	err := eachLine(path, 2, func(f []string, line string) {
		if name, _, ok := strings.Cut(line, ":"); ok {
			names = append(names, strings.TrimSpace(name))
		}
	})
	slices.Sort(names)
	return names, err
}

// netRoutes lists the routes of a network namespace that leave loopback:
// every IPv4 route of the main table (loopback's own live in the local
// table, which net/route does not show) and every IPv6 route on another
// device than lo. IPv6 may be disabled, leaving no ipv6_route.
func netRoutes(dir string) ([]string, error) {
	var routes []string
	err := eachLine(filepath.Join(dir, "route"), 1, func(f []string, _ string) {
		if len(f) >= 8 {
			routes = append(routes, fmt.Sprintf("%s/%s via %s dev %s", hexIPv4(f[1]), maskBits(f[7]), hexIPv4(f[2]), f[0]))
		}
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(dir, "ipv6_route"), 0, func(f []string, _ string) {
		if len(f) >= 10 && f[9] != "lo" {
			routes = append(routes, fmt.Sprintf("%s/%s dev %s", hexIPv6(f[0]), hexInt(f[1]), f[9]))
		}
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return routes, err
}

// loopbackListeners maps the ports of the TCP sockets that accept
// connections to 127.0.0.1 (bound to it or to a wildcard address, in tcp
// or tcp6) to their socket inodes.
func loopbackListeners(dir string) (map[int]string, error) {
	out := map[int]string{}
	for _, name := range []string{"tcp", "tcp6"} {
		err := eachLine(filepath.Join(dir, name), 1, func(f []string, _ string) {
			// sl local_address rem_address st ... uid timeout inode
			if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
				return
			}
			host, port, ok := strings.Cut(f[1], ":")
			if !ok {
				return
			}
			a, ok := hexAddr(host)
			p, err := strconv.ParseUint(port, 16, 16)
			// A wildcard listener also takes connections to 127.0.0.1.
			if a = a.Unmap(); ok && err == nil && (a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a.IsUnspecified()) {
				out[int(p)] = f[9]
			}
		})
		if err != nil && !(name == "tcp6" && errors.Is(err, fs.ErrNotExist)) {
			return nil, err
		}
	}
	return out, nil
}

// containerSockets are the socket inodes held open by processes in the
// pid namespace of the container's init. Processes whose fds cannot be
// read are skipped: they cannot be the container's, whose user namespace
// the caller owns.
func containerSockets(pid int) map[string]bool {
	held := map[string]bool{}
	pidns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return held
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || ns != pidns {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
				held[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	return held
}

// eachLine calls fn with the fields of every line of path after skip
// header lines.
func eachLine(path string, skip int, fn func(fields []string, line string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		if n >= skip {
			fn(strings.Fields(sc.Text()), sc.Text())
		}
	}
	return sc.Err()
}

// hexAddr reads an address as /proc/net/tcp{,6} print it: 32-bit words of
// the network-order bytes, each in the host's byte order.
func hexAddr(s string) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		w := binary.BigEndian.Uint32(b[i:])
		binary.NativeEndian.PutUint32(b[i:], w)
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

func hexIPv4(s string) string {
	if a, ok := hexAddr(s); ok {
		return a.String()
	}
	return s
}

func maskBits(s string) string {
	if a, ok := hexAddr(s); ok && a.Is4() {
		m := a.As4()
		return strconv.Itoa(bits.OnesCount32(binary.BigEndian.Uint32(m[:])))
	}
	return s
}

// hexIPv6 reads an address of ipv6_route, printed in network order.
func hexIPv6(s string) string {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 16 {
		return netip.AddrFrom16([16]byte(b)).String()
	}
	return s
}

func hexInt(s string) string {
	if v, err := strconv.ParseUint(s, 16, 32); err == nil {
		return strconv.FormatUint(v, 10)
	}
	return s
}
