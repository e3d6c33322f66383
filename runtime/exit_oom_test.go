package runtime

import (
	"testing"
)

// oomKills reads the one counter, on either cgroup version, and takes a
// missing file or line (an old kernel, no memory controller) as none.
func TestOOMKills(t *testing.T) {
	mount := t.TempDir()
	writeTree(t, mount, map[string]string{
		"memory/clawrun/a/memory.oom_control":   "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
		"memory/clawrun/old/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
		"clawrun/b/memory.events":               "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
	})
	for _, c := range []struct {
		unified bool
		path    string
		want    uint64
	}{
		{false, "/clawrun/a", 3},
		{false, "/clawrun/old", 0}, // before Linux 4.13: no oom_kill line
		{false, "/clawrun/none", 0},
		{true, "/clawrun/b", 2},
		{true, "/clawrun/none", 0},
	} {
		if got := oomKills(mount, c.unified, c.path); got != c.want {
			t.Errorf("oomKills(v2=%v, %s) = %d, want %d", c.unified, c.path, got, c.want)
		}
	}
}
