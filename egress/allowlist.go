package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Pattern is one egress allowlist entry, "host:port". Host is an exact host
// name, an IP address (exact only), or "*.suffix" for every name under suffix
// (not suffix itself). The port is always required: an entry never opens
// every port of a host.
type Pattern struct {
	// Host is lowercase and without a trailing dot; for a wildcard it is the
	// suffix without "*.". For an IP address it is the canonical form.
	Host     string
	Port     uint16
	Wildcard bool
	IP       bool
}

// String is the canonical form of the pattern; ParsePattern(p.String())
// returns p.
func (p Pattern) String() string {
	host := p.Host
	if p.Wildcard {
		host = "*." + host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(p.Port)))
}

// Matches reports whether the normalized host and port fall under p.
func (p Pattern) Matches(host string, port uint16) bool {
	if port != p.Port {
		return false
	}
	if !p.Wildcard {
		return host == p.Host
	}
	return len(host) > len(p.Host)+1 && strings.HasSuffix(host, "."+p.Host)
}

// ParsePattern parses one allowlist entry. Errors say what was wrong and what
// a valid entry looks like.
func ParsePattern(s string) (Pattern, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("egress entry %q: %w", s, err)
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok && !strings.Contains(rest, "*") {
		name, err := normalizeName(rest)
		if err != nil {
			return Pattern{}, fmt.Errorf("egress entry %q: wildcard suffix: %w", s, err)
		}
		if !strings.Contains(name, ".") {
			return Pattern{}, fmt.Errorf("egress entry %q: wildcard *.%s is too broad: name at least two labels after \"*.\", e.g. *.example.com:443", s, name)
		}
		return Pattern{Host: name, Port: port, Wildcard: true}, nil
	}
	if strings.Contains(host, "*") {
		return Pattern{}, fmt.Errorf("egress entry %q: a wildcard is only allowed as a leading \"*.\", e.g. *.example.com:443", s)
	}
	if ip, ok := parseIP(host); ok {
		return Pattern{Host: ip.String(), Port: port, IP: true}, nil
	}
	name, err := normalizeName(host)
	if err != nil {
		return Pattern{}, fmt.Errorf("egress entry %q: %w", s, err)
	}
	return Pattern{Host: name, Port: port}, nil
}

// splitHostPort splits "host:port" and checks the port: a decimal number
// 1-65535 in canonical form.
func splitHostPort(s string) (string, uint16, error) {
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, errors.New("want host:port, e.g. api.example.com:443 or [2001:db8::1]:443")
	}
	if host == "" {
		return "", 0, errors.New("the host is empty; want host:port, e.g. api.example.com:443")
	}
	port, err := parsePort(portText)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("port %q: want a number 1-65535", s)
	}
	return uint16(n), nil
}

// parseIP accepts an IP address without a zone, IPv4-mapped IPv6 folded to
// IPv4.
func parseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// normalizeName lowercases a DNS host name, drops one trailing dot and checks
// its syntax. A name whose last label is all digits is refused: it is no
// valid top-level domain but what some resolvers read as an IPv4 address in
// a legacy form ("127.1", "0x7f.0.0.1").
func normalizeName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return "", errors.New("the host name is empty")
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host name is %d characters long; at most 253", len(name))
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("host name %q: %w", s, err)
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") {
		return "", fmt.Errorf("host name %q looks like an IP address in a legacy form; write the address in dotted form", s)
	}
	return name, nil
}

func checkLabel(label string) error {
	if label == "" {
		return errors.New("empty label (two dots in a row, or a leading dot)")
	}
	if len(label) > 63 {
		return fmt.Errorf("label %q is longer than 63 characters", label)
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 0x80:
			return fmt.Errorf("label %q is not ASCII; write internationalized names in their xn-- (punycode) form", label)
		default:
			return fmt.Errorf("label %q holds %q; a host name has only letters, digits, '-' and '_'", label, c)
		}
	}
	return nil
}

// Allowlist is a parsed, immutable list of egress patterns.
type Allowlist struct {
	patterns []Pattern
}

// ParseAllowlist parses every entry and reports all bad ones at once.
func ParseAllowlist(entries []string) (*Allowlist, error) {
	a := &Allowlist{}
	var errs []error
	seen := map[Pattern]bool{}
	for _, e := range entries {
		p, err := ParsePattern(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[p] {
			seen[p] = true
			a.patterns = append(a.patterns, p)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Patterns returns a copy of the patterns in the order given.
func (a *Allowlist) Patterns() []Pattern {
	return append([]Pattern(nil), a.patterns...)
}

// Match finds the entry that allows host:port. An exact entry wins over a
// wildcard, because only an exact entry lets a name reach a non-public
// address. host must already be normalized (lowercase, no trailing dot,
// canonical IP form).
func (a *Allowlist) Match(host string, port uint16) (Pattern, bool) {
	var found Pattern
	ok := false
	for _, p := range a.patterns {
		if !p.Matches(host, port) {
			continue
		}
		if !p.Wildcard {
			return p, true
		}
		if !ok {
			found, ok = p, true
		}
	}
	return found, ok
}
