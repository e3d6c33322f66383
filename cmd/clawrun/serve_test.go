package main

import (
	"strings"
	"testing"
	"time"
)

func TestServeFlagsCheck(t *testing.T) {
	ok := serveFlags{restartDelay: time.Second, restartDelayMax: 30 * time.Second, maxAttempts: 5}
	if err := ok.check(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*serveFlags)
		want string
	}{
		{"zero delay", func(f *serveFlags) { f.restartDelay = 0 }, "--restart-delay 0s: give a positive duration"},
		{"max below min", func(f *serveFlags) { f.restartDelayMax = 500 * time.Millisecond }, "--restart-delay-max 500ms is below --restart-delay 1s"},
		{"no attempts", func(f *serveFlags) { f.maxAttempts = 0 }, "--max-attempts 0: give at least 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := ok
			c.edit(&f)
			err := f.check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("check() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The flags reach serve with the gateway's defaults, so `serve --help`
// tells the truth about them.
func TestServeFlagDefaults(t *testing.T) {
	cmd := newServeCmd(&globals{})
	for flag, want := range map[string]string{"restart-delay": "1s", "restart-delay-max": "30s", "max-attempts": "5"} {
		f := cmd.Flags().Lookup(flag)
		if f == nil {
			t.Fatalf("serve has no --%s", flag)
		}
		if f.DefValue != want {
			t.Errorf("--%s defaults to %s, want %s", flag, f.DefValue, want)
		}
	}
}
