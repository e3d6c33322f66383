package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	good := []struct {
		in   string
		want Pattern
		text string
	}{
		{"api.anthropic.com:443", Pattern{Host: "api.anthropic.com", Port: 443}, "api.anthropic.com:443"},
		{"API.Example.COM.:8443", Pattern{Host: "api.example.com", Port: 8443}, "api.example.com:8443"},
		{"*.githubusercontent.com:443", Pattern{Host: "githubusercontent.com", Port: 443, Wildcard: true}, "*.githubusercontent.com:443"},
		{"localhost:8080", Pattern{Host: "localhost", Port: 8080}, "localhost:8080"},
		{"_dmarc.example.com:53", Pattern{Host: "_dmarc.example.com", Port: 53}, "_dmarc.example.com:53"},
		{"xn--bcher-kva.example:443", Pattern{Host: "xn--bcher-kva.example", Port: 443}, "xn--bcher-kva.example:443"},
		{"127.0.0.1:8080", Pattern{Host: "127.0.0.1", Port: 8080, IP: true}, "127.0.0.1:8080"},
		{"[::1]:443", Pattern{Host: "::1", Port: 443, IP: true}, "[::1]:443"},
		{"[::ffff:10.0.0.1]:80", Pattern{Host: "10.0.0.1", Port: 80, IP: true}, "10.0.0.1:80"},
		{"a.b:65535", Pattern{Host: "a.b", Port: 65535}, "a.b:65535"},
	}
	for _, tc := range good {
		p, err := ParsePattern(tc.in)
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", tc.in, err)
			continue
		}
		if p != tc.want || p.String() != tc.text {
			t.Errorf("ParsePattern(%q) = %+v (%s), want %+v (%s)", tc.in, p, p, tc.want, tc.text)
		}
	}
	bad := []struct{ in, msg string }{
		{"api.anthropic.com", "want host:port"},
		{"api.anthropic.com:", "want a number"},
		{"api.anthropic.com:0", "want a number"},
		{"api.anthropic.com:65536", "want a number"},
		{"api.anthropic.com:0443", "want a number"},
		{"api.anthropic.com:+443", "want a number"},
		{"api.anthropic.com:*", "want a number"},
		{":443", "host is empty"},
		{"*:443", "wildcard is only allowed"},
		{"*.com:443", "too broad"},
		{"*.:443", "empty"},
		{"**.example.com:443", "wildcard is only allowed"},
		{"a.*.example.com:443", "wildcard is only allowed"},
		{"*example.com:443", "wildcard is only allowed"},
		{"*.*.example.com:443", "wildcard is only allowed"},
		{"exa mple.com:443", "letters, digits"},
		{"example..com:443", "empty label"},
		{".example.com:443", "empty label"},
		{"-x.example.com:443", "hyphen"},
		{"bücher.example:443", "xn--"},
		{strings.Repeat("a", 64) + ".com:443", "longer than 63"},
		{strings.Repeat("a.", 127) + "com:443", "at most 253"},
		{"127.1:80", "legacy form"},
		{"2130706433:80", "legacy form"},
		{"0x7f.0.0.1:80", "legacy form"},
		{"[fe80::1%eth0]:80", "letters, digits"},
		{"::1:443", "want host:port"},
		{"api.example.com:443/path", "want a number"},
		{"http://api.example.com:443", "want host:port"},
	}
	for _, tc := range bad {
		p, err := ParsePattern(tc.in)
		if err == nil {
			t.Errorf("ParsePattern(%q) = %+v, want an error", tc.in, p)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "egress entry") {
			t.Errorf("ParsePattern(%q): %v, want it to say %q", tc.in, err, tc.msg)
		}
	}
}

func TestAllowlistMatch(t *testing.T) {
	a, err := ParseAllowlist([]string{
		"api.anthropic.com:443",
		"*.githubusercontent.com:443",
		"*.example.com:443",
		"exact.example.com:443",
		"10.0.0.1:8080",
		"[2001:db8::1]:443",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host     string
		port     uint16
		ok       bool
		wildcard bool
	}{
		{"api.anthropic.com", 443, true, false},
		{"api.anthropic.com", 80, false, false},
		{"anthropic.com", 443, false, false},
		{"x.api.anthropic.com", 443, false, false},
		{"raw.githubusercontent.com", 443, true, true},
		{"a.b.githubusercontent.com", 443, true, true},
		{"githubusercontent.com", 443, false, false},
		{"evilgithubusercontent.com", 443, false, false},
		{"raw.githubusercontent.com.evil.net", 443, false, false},
		{"raw.githubusercontent.com", 8443, false, false},
		{"exact.example.com", 443, true, false}, // the exact entry wins
		{"other.example.com", 443, true, true},
		{"10.0.0.1", 8080, true, false},
		{"10.0.0.1", 80, false, false},
		{"2001:db8::1", 443, true, false},
		{"", 443, false, false},
	}
	for _, tc := range tests {
		p, ok := a.Match(tc.host, tc.port)
		if ok != tc.ok || (ok && p.Wildcard != tc.wildcard) {
			t.Errorf("Match(%s, %d) = %v, %v; want ok %v, wildcard %v", tc.host, tc.port, p, ok, tc.ok, tc.wildcard)
		}
	}
}

func TestParseAllowlistReportsEveryError(t *testing.T) {
	_, err := ParseAllowlist([]string{"ok.example.com:443", "nope", "*:1", "also.example.com:443"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`"nope"`, `"*:1"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestAddrClass(t *testing.T) {
	tests := []struct{ addr, class string }{
		{"93.184.215.14", ""},
		{"8.8.8.8", ""},
		{"2606:4700::1111", ""},
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "private"},
		{"fd12:3456::1", "private (ULA)"},
		{"100.64.0.1", "shared (CGNAT)"},
		{"100.127.255.254", "shared (CGNAT)"},
		{"100.128.0.1", ""},
		{"169.254.169.254", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"168.63.129.16", "cloud metadata"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"255.255.255.255", "reserved"},
		{"240.0.0.1", "reserved"},
		{"64:ff9b::a00:1", "private"},  // NAT64 of 10.0.0.1
		{"64:ff9b::5db8:d70e", ""},     // NAT64 of 93.184.215.14
		{"2002:7f00:1::1", "loopback"}, // 6to4 of 127.0.0.1
		{"2001:0:4136:e378::1", "Teredo"},
		{"::127.0.0.1", "reserved"}, // IPv4-compatible, deprecated
		{"100::1", "reserved"},
	}
	for _, tc := range tests {
		if got := addrClass(netip.MustParseAddr(tc.addr)); got != tc.class {
			t.Errorf("addrClass(%s) = %q, want %q", tc.addr, got, tc.class)
		}
	}
}
