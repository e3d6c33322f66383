package runtime

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
)

func TestOuterMap(t *testing.T) {
	tests := []struct {
		name string
		sub  SubRange
		want []specs.LinuxIDMapping
	}{
		{"usual range", SubRange{100000, 65536}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 1234, Size: 1},
			{ContainerID: 1, HostID: 100000, Size: 65535},
		}},
		{"big range capped", SubRange{100000, 1 << 24}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 1234, Size: 1},
			{ContainerID: 1, HostID: 100000, Size: 65535},
		}},
		{"small range", SubRange{500000, 10}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 1234, Size: 1},
			{ContainerID: 1, HostID: 500000, Size: 10},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := outerMap(1234, tt.sub); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestToOuter translates what ResolveIdentity produces for a rootless host
// into the ids of the outer namespace: the host user becomes 0 and
// subordinate id S+k becomes 1+k. Every translated id must exist in the
// outer namespace, or newuidmap inside it would be refused.
func TestToOuter(t *testing.T) {
	hosts := []struct {
		name string
		sub  SubRange
		user *policy.User
	}{
		{"default user", SubRange{100000, 65536}, nil},
		{"root inside", SubRange{100000, 65536}, &policy.User{}},
		{"nobody inside", SubRange{100000, 65536}, &policy.User{UID: 65534, GID: 65534}},
		{"big range", SubRange{200000, 1 << 20}, nil},
		{"small range", SubRange{300000, 2000}, nil},
	}
	for _, hc := range hosts {
		t.Run(hc.name, func(t *testing.T) {
			h := Host{UID: 1234, GID: 2345, Name: "alice", MappingTools: true,
				SubUIDs: []SubRange{hc.sub}, SubGIDs: []SubRange{hc.sub}}
			p := &policy.Plan{IDMap: policy.IDMapAuto}
			if hc.user != nil {
				p.User, p.UserSet = *hc.user, true
			}
			id, err := ResolveIdentity(p, h)
			if err != nil {
				t.Fatal(err)
			}
			if !needsOuterUserns(id, h) {
				t.Fatal("rootless subordinate identity does not need the outer namespace")
			}
			for _, c := range []struct {
				kind   string
				ms     []specs.LinuxIDMapping
				hostID int
			}{{"uid", id.UIDMappings, h.UID}, {"gid", id.GIDMappings, h.GID}} {
				outer := outerMap(c.hostID, hc.sub)
				got := toOuter(c.ms, c.hostID, hc.sub)
				if len(got) != len(c.ms) {
					t.Fatalf("%s: %d mappings from %d", c.kind, len(got), len(c.ms))
				}
				for i, m := range got {
					in := c.ms[i]
					if m.ContainerID != in.ContainerID || m.Size != in.Size {
						t.Errorf("%s: %+v changed container ids or size of %+v", c.kind, m, in)
					}
					want := in.HostID - uint32(hc.sub.Start) + 1
					if in.HostID == uint32(c.hostID) {
						want = 0
					}
					if m.HostID != want {
						t.Errorf("%s: host id %d became outer %d, want %d", c.kind, in.HostID, m.HostID, want)
					}
					if !within(outer, m.HostID, m.Size) {
						t.Errorf("%s: outer ids %d-%d are not all mapped by the outer map %+v", c.kind, m.HostID, m.HostID+m.Size-1, outer)
					}
					// Going back through the outer map lands on the
					// original host ids.
					if h, ok := hostOf(outer, m.HostID); !ok || h != in.HostID {
						t.Errorf("%s: outer %d is host %d, want %d", c.kind, m.HostID, h, in.HostID)
					}
				}
				// The agent's uid is outer 0, i.e. the invoking user.
				agent := id.User.UID
				if c.kind == "gid" {
					agent = id.User.GID
				}
				if o, ok := hostOf(got, agent); !ok || o != 0 {
					t.Errorf("%s: agent id %d is outer %d, want 0", c.kind, agent, o)
				}
			}
			if !reflect.DeepEqual(id.UIDMappings, mustResolve(t, p, h).UIDMappings) {
				t.Error("toOuter modified the identity's mappings")
			}
		})
	}
}

func TestToOuterExample(t *testing.T) {
	sub := SubRange{100000, 65536}
	in := []specs.LinuxIDMapping{
		{ContainerID: 0, HostID: 100000, Size: 1000},
		{ContainerID: 1000, HostID: 1234, Size: 1},
		{ContainerID: 1001, HostID: 101000, Size: 64535},
	}
	want := []specs.LinuxIDMapping{
		{ContainerID: 0, HostID: 1, Size: 1000},
		{ContainerID: 1000, HostID: 0, Size: 1},
		{ContainerID: 1001, HostID: 1001, Size: 64535},
	}
	got := toOuter(in, 1234, sub)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if in[1].HostID != 1234 {
		t.Error("toOuter modified its input")
	}
}

func mustResolve(t *testing.T, p *policy.Plan, h Host) *Identity {
	t.Helper()
	id, err := ResolveIdentity(p, h)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// within reports whether ids start..start+size-1 are all mapped by ms.
func within(ms []specs.LinuxIDMapping, start, size uint32) bool {
	for id := start; id < start+size; id++ {
		if _, ok := hostOf(ms, id); !ok {
			return false
		}
	}
	return true
}

func TestNeedsOuterUserns(t *testing.T) {
	tests := []struct {
		kind string
		uid  int
		want bool
	}{
		{"subordinate", 1000, true},
		{"single", 1000, true}, // every rootless run, so grant sources are opened as root of the outer namespace
		{"subordinate", 0, false},
		{"single", 0, false},
	}
	for _, tt := range tests {
		if got := needsOuterUserns(&Identity{Kind: tt.kind}, Host{UID: tt.uid}); got != tt.want {
			t.Errorf("kind %s uid %d: %v, want %v", tt.kind, tt.uid, got, tt.want)
		}
	}
}

func TestWithEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"absent", []string{"A=1", "B=2"}, []string{"A=1", "B=2", "K=new"}},
		{"present", []string{"A=1", "K=old", "B=2"}, []string{"A=1", "B=2", "K=new"}},
		{"duplicates", []string{"K=1", "A=1", "K=2", "K="}, []string{"A=1", "K=new"}},
		{"prefix of another key", []string{"KEY=1", "K2=2", "K=3"}, []string{"KEY=1", "K2=2", "K=new"}},
		{"value mentions key", []string{"A=K=1"}, []string{"A=K=1", "K=new"}},
		{"empty", nil, []string{"K=new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.env)
			got := withEnv(tt.env, "K", "new")
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(tt.env, in) {
				t.Errorf("input changed to %q", tt.env)
			}
		})
	}
}

// TestNestedErrorKinds checks that the sentinel errors callers match on
// survive the trip through the outer namespace as a string and a kind.
func TestNestedErrorKinds(t *testing.T) {
	for _, sentinel := range []error{ErrNameInUse, rootfs.ErrCommandNotFound} {
		orig := errors.Join(errors.New("context"), sentinel)
		kind := errorKind(orig)
		if kind == "" {
			t.Errorf("%v: no kind", sentinel)
		}
		back := &nestedError{msg: orig.Error(), kind: kind}
		if !errors.Is(back, sentinel) {
			t.Errorf("%v did not survive as kind %q", sentinel, kind)
		}
		if back.Error() != orig.Error() {
			t.Errorf("message %q, want %q", back.Error(), orig.Error())
		}
	}
	if k := errorKind(errors.New("other")); k != "" {
		t.Errorf("unrelated error got kind %q", k)
	}
	if errors.Is(&nestedError{msg: "x"}, ErrNameInUse) {
		t.Error("an error without a kind matches ErrNameInUse")
	}
}
