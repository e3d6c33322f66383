package policy

import (
	"path"
	"testing"
)

// The compiled globs of blocked patterns answer exactly as path.Match,
// which defines the pattern syntax (docs/allowlist.md).
func TestGlobMatchesPathMatch(t *testing.T) {
	globs := append([]string{
		"*", "a*", "*a", "*.pem", "id_rsa*", "a*b", "[ab]c", "?x", `\*x`, `a\*`, "*.*", "**", "x[", ".env.*",
	}, BuiltinBlocked...)
	globs = append(globs, keyFilePatterns...)
	names := []string{
		"", "a", "b", "ab", "ba", "abc", "x", "*x", "a*", ".pem", "k.pem", "pem", "id_rsa", "id_rsa.pub", "xid_rsa",
		".ssh", ".sshx", ".env", ".env.local", ".env.example", "docker.sock", "bc", "cc", "xx", "x.y", "x[",
	}
	for _, g := range globs {
		c := compileGlob(g)
		for _, n := range names {
			want, err := path.Match(g, n)
			if err != nil {
				want = false // a bad glob matches nothing (parsePattern refuses it)
			}
			if got := c.match(n); got != want {
				t.Errorf("glob %q (kind %d) on %q: %v, path.Match says %v", g, c.kind, n, got, want)
			}
		}
	}
}

// FuzzGlob checks the same for any glob and name.
func FuzzGlob(f *testing.F) {
	for _, s := range []string{"*.pem", "id_rsa*", ".ssh", "a*b", `\*`} {
		f.Add(s, "id_rsa.pem")
	}
	f.Fuzz(func(t *testing.T, g, name string) {
		want, err := path.Match(g, name)
		if err != nil || containsSlash(name) || containsSlash(g) {
			return // parsePattern refuses bad globs; names never hold '/'
		}
		if got := compileGlob(g).match(name); got != want {
			t.Fatalf("glob %q on %q: %v, path.Match says %v", g, name, got, want)
		}
	})
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

func TestLastComponents(t *testing.T) {
	for _, c := range []struct {
		p    string
		n    int
		want string
	}{
		{"/a/b/c", 1, "c"}, {"/a/b/c", 2, "b/c"}, {"/a/b/c", 3, "a/b/c"}, {"/a/b/c", 9, "a/b/c"}, {"/a", 2, "a"},
	} {
		got := lastComponents(c.p, c.n)
		if path.Join(got...) != c.want {
			t.Errorf("lastComponents(%q, %d) = %q, want %s", c.p, c.n, got, c.want)
		}
	}
}
