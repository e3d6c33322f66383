package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/hostcheck"
	"github.com/clawrun/clawrun/runtime"
)

func u64(v uint64) *uint64 { return &v }

func TestStatsTable(t *testing.T) {
	var b bytes.Buffer
	err := writeStatsTable(&b, []runtime.Stats{
		{Name: "busy", Status: "running", Cgroup: "/clawrun/busy", CgroupVersion: 1, Usage: &runtime.Usage{
			CPUNanos: u64(1_500_000_000), MemoryBytes: u64(3 << 20), MemoryPeakBytes: u64(4 << 20),
			Pids: u64(2), OOMKills: u64(0), CPUPeriods: u64(20), CPUThrottled: u64(15), CPUThrottledNanos: u64(800_000_000),
		}},
		{Name: "free1", Status: "running", Note: "no cgroup (rootless on cgroup v1)"},
		{Name: "free2", Status: "running", Note: "no cgroup (rootless on cgroup v1)"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{"1.5s", "3.0MiB", "4.0MiB", "15/20 800ms", "free1, free2: no cgroup (rootless on cgroup v1)"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "free1 ") && (strings.Contains(line, " 0 ") || strings.Count(line, "-") < 6) {
			t.Errorf("a container without a cgroup must show dashes, not zeros: %q", line)
		}
	}
}

func TestWatchStatsStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := watchStats(ctx, &bytes.Buffer{}, time.Millisecond, false, func() error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("watch: %v after %d frames", err, n)
	}
	boom := errors.New("boom")
	if err := watchStats(context.Background(), &bytes.Buffer{}, time.Millisecond, false, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("watch error: %v", err)
	}
}

func TestDoctorTable(t *testing.T) {
	var b bytes.Buffer
	err := writeDoctor(&b, hostcheck.Report{
		Checks: []hostcheck.Result{
			{Check: "user namespaces", Status: hostcheck.Fail, Detail: "disabled", Fix: "sysctl -w user.max_user_namespaces=15000", Essential: true},
			{Check: "cgroups", Status: hostcheck.Warn, Detail: "cgroup v1", Fix: "run as root"},
		},
		Limits: hostcheck.Limits{Why: "rootless on cgroup v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{"FAIL!", "fix: sysctl -w user.max_user_namespaces=15000", "WARN", "memory no, cpu no, pids no (rootless on cgroup v1)", "agents cannot run"} {
		if !strings.Contains(out, w) {
			t.Errorf("doctor output lacks %q:\n%s", w, out)
		}
	}
}
