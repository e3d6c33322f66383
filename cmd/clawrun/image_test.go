package main

import (
	"strings"
	"testing"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
	"github.com/clawrun/clawrun/runtime"
)

// The ownership line follows the base's owner through the agent's map:
// container root under a single-id map, the kept agent id with subordinate
// ids (rootless, and as root with a range of its own), nobody when unmapped.
func TestOwnershipText(t *testing.T) {
	user := runtime.Host{UID: 1000, GID: 1000, Name: "u", SubUIDs: []runtime.SubRange{{Start: 100000, Count: 65536}}, SubGIDs: []runtime.SubRange{{Start: 100000, Count: 65536}}, MappingTools: true}
	root := runtime.Host{UID: 0, GID: 0, Name: "root", SubUIDs: user.SubUIDs, SubGIDs: user.SubGIDs}
	bare := user
	bare.SubUIDs, bare.SubGIDs = nil, nil
	for _, c := range []struct {
		name  string
		host  runtime.Host
		owner int
		plan  policy.Plan
		want  string
	}{
		{"single", bare, 1000, policy.Plan{}, "single-id map) every file appears owned by 0:0, container root"},
		{"subordinate", user, 1000, policy.Plan{}, "every file appears owned by 1000:1000, the agent; container root"},
		{"subordinate user 0", user, 1000, policy.Plan{UserSet: true}, "every file appears owned by 0:0, the agent;"},
		{"root with a range", root, 0, policy.Plan{}, "every file appears owned by 1000:1000, the agent"},
		{"unmapped owner", user, 4242, policy.Plan{}, "not mapped into this container"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := runtime.ResolveIdentity(&c.plan, c.host)
			if err != nil {
				t.Fatal(err)
			}
			got := ownershipText(rootfs.Ownership{Mode: rootfs.OwnedByUnpacker, UID: c.owner, GID: c.owner}, id)
			if !strings.Contains(got, c.want) || !strings.Contains(got, "not applied") {
				t.Errorf("got %q, want it to contain %q", got, c.want)
			}
		})
	}
}
