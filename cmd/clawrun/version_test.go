package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}},
		Deps: []*debug.Module{
			{Path: "github.com/opencontainers/runc", Version: "v1.5.2"},
			{Path: "github.com/opencontainers/runtime-spec", Version: "v1.2.1"},
		},
	}
	got := versionText("dev", bi, "2.5.4")
	for _, want := range []string{
		"clawrun dev (commit 0123456789ab, modified)\n",
		"go1.26.0 ",
		"libcontainer v1.5.2 (github.com/opencontainers/runc), runtime-spec v1.2.1, libseccomp 2.5.4\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("version text lacks %q:\n%s", want, got)
		}
	}
	// No build information (a stripped test binary, say): nothing made up.
	if got := versionText("v1.0.0", nil, "2.5.4"); !strings.HasPrefix(got, "clawrun v1.0.0\nunknown ") || !strings.Contains(got, "libcontainer unknown") {
		t.Errorf("without build info:\n%s", got)
	}
}
