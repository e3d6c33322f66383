package egress

import (
	"strings"
	"testing"
)

// The seed corpus is in testdata/fuzz/FuzzParsePattern; `go test` runs it as
// ordinary tests. To fuzz:
//
//	go test -run '^$' -fuzz FuzzParsePattern -fuzztime 30s ./egress

// FuzzParsePattern feeds arbitrary entries to ParsePattern: it must never
// panic, and an entry it accepts must be canonical, round-trip, and match
// what it says and nothing broader.
func FuzzParsePattern(f *testing.F) {
	f.Add("api.anthropic.com:443")
	f.Add("*.githubusercontent.com:443")
	f.Add("[2001:db8::1]:443")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "egress entry ") {
				t.Fatalf("error without the entry: %v", err)
			}
			return
		}
		text := p.String()
		again, err := ParsePattern(text)
		if err != nil || again != p {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, p, text, again, err)
		}
		if p.Port == 0 || p.Host == "" || p.Host != strings.ToLower(p.Host) || strings.ContainsAny(p.Host, "* \t\r\n/%") {
			t.Fatalf("%q accepted as %+v", s, p)
		}
		if p.Wildcard && (p.IP || !strings.Contains(p.Host, ".")) {
			t.Fatalf("%q: wildcard %+v", s, p)
		}
		if p.IP {
			if _, ok := parseIP(p.Host); !ok {
				t.Fatalf("%q: IP pattern %+v does not parse", s, p)
			}
		}
		a := &Allowlist{patterns: []Pattern{p}}
		if p.Wildcard {
			if _, ok := a.Match(p.Host, p.Port); ok {
				t.Fatalf("%s matches its own suffix %s", p, p.Host)
			}
			if _, ok := a.Match("x."+p.Host, p.Port); !ok {
				t.Fatalf("%s does not match x.%s", p, p.Host)
			}
		} else if got, ok := a.Match(p.Host, p.Port); !ok || got != p {
			t.Fatalf("%s does not match itself", p)
		}
		if _, ok := a.Match(p.Host, p.Port+1); ok && p.Port != 65535 {
			t.Fatalf("%s matches another port", p)
		}
		if _, ok := a.Match("x"+p.Host, p.Port); ok && !p.IP {
			t.Fatalf("%s matches x%s", p, p.Host)
		}
	})
}
