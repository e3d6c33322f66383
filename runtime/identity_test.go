package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
)

func TestParseSubIDs(t *testing.T) {
	tests := []struct {
		name  string
		input string
		user  string
		uid   int
		want  []SubRange
	}{
		{"by name", "alice:100000:65536\n", "alice", 1000, []SubRange{{100000, 65536}}},
		{"by numeric uid", "1000:200000:65536\n", "alice", 1000, []SubRange{{200000, 65536}}},
		{"numeric uid without a name", "1000:200000:65536\n", "", 1000, []SubRange{{200000, 65536}}},
		{"other users skipped", "bob:100000:65536\nalice:165536:65536\n1001:300000:10\n", "alice", 1000,
			[]SubRange{{165536, 65536}}},
		{"several ranges kept in order", "alice:100000:10\nalice:200000:65536\n1000:300000:5\n", "alice", 1000,
			[]SubRange{{100000, 10}, {200000, 65536}, {300000, 5}}},
		{"comments and blank lines", "# subordinate ids\n\n   \n  alice:100000:65536  \n#alice:1:1\n", "alice", 1000,
			[]SubRange{{100000, 65536}}},
		{"malformed lines", strings.Join([]string{
			"alice:100000",                 // too few fields
			"alice:100000:65536:x",         // too many fields
			"alice:abc:65536",              // bad start
			"alice:100000:many",            // bad count
			"alice:100000:0",               // empty range
			"alice:100000:-5",              // negative count
			"alice:300000:1024",            // the one good line
			"alice 400000 65536",           // wrong separator
			"ALICE:500000:65536",           // names are case-sensitive
			"alice:99999999999999999999:1", // overflows int64
		}, "\n"), "alice", 1000, []SubRange{{300000, 1024}}},
		{"nothing for us", "bob:100000:65536\n", "alice", 1000, nil},
		{"empty file", "", "alice", 1000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseSubIDs(strings.NewReader(tt.input), tt.user, tt.uid)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadSubIDs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subuid")
	if err := os.WriteFile(path, []byte("bob:1:2\nalice:100000:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := readSubIDs(path, "alice", 1000), []SubRange{{100000, 65536}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := readSubIDs(filepath.Join(dir, "missing"), "alice", 1000); got != nil {
		t.Errorf("missing file gave %+v", got)
	}
}

func TestKeepIDMappings(t *testing.T) {
	const host = 1234
	tests := []struct {
		name    string
		keep    uint32
		sub     SubRange
		want    []specs.LinuxIDMapping
		wantErr bool
	}{
		{"keep 1000", 1000, SubRange{100000, 65536}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 100000, Size: 1000},
			{ContainerID: 1000, HostID: host, Size: 1},
			{ContainerID: 1001, HostID: 101000, Size: 64535},
		}, false},
		{"keep root", 0, SubRange{100000, 65536}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: host, Size: 1},
			{ContainerID: 1, HostID: 100000, Size: 65535},
		}, false},
		{"big range is capped", 1000, SubRange{100000, 1 << 30}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 100000, Size: 1000},
			{ContainerID: 1000, HostID: host, Size: 1},
			{ContainerID: 1001, HostID: 101000, Size: 64535},
		}, false},
		{"small range", 2, SubRange{500000, 10}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 500000, Size: 2},
			{ContainerID: 2, HostID: host, Size: 1},
			{ContainerID: 3, HostID: 500002, Size: 8},
		}, false},
		{"keep at the top of the range", 10, SubRange{500000, 10}, []specs.LinuxIDMapping{
			{ContainerID: 0, HostID: 500000, Size: 10},
			{ContainerID: 10, HostID: host, Size: 1},
		}, false},
		{"keep beyond a small range", 11, SubRange{500000, 10}, nil, true},
		{"keep beyond the cap", 65536, SubRange{100000, 1 << 20}, nil, true},
		{"nobody beyond a short range", 65534, SubRange{100000, 1000}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keepIDMappings(tt.keep, host, tt.sub)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, mappings %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			checkMappings(t, got, tt.keep, host, tt.sub)
		})
	}
}

// checkMappings checks the invariants of a keep-id map: container ids are
// contiguous from 0 without overlap, keep maps to host, every other id lands
// inside the subordinate range exactly once, and at most maxContainerIDs ids
// are mapped.
func checkMappings(t *testing.T, ms []specs.LinuxIDMapping, keep, host uint32, sub SubRange) {
	t.Helper()
	next := uint32(0)
	usedHost := map[uint32]bool{}
	for _, m := range ms {
		if m.Size == 0 {
			t.Errorf("empty mapping %+v", m)
		}
		if m.ContainerID != next {
			t.Errorf("mapping %+v: container ids not contiguous (expected to start at %d)", m, next)
		}
		next = m.ContainerID + m.Size
		if m.HostID == host {
			if m.ContainerID != keep || m.Size != 1 {
				t.Errorf("host id %d mapped as %+v, want only container id %d", host, m, keep)
			}
			continue
		}
		if int64(m.HostID) < sub.Start || int64(m.HostID)+int64(m.Size) > sub.Start+sub.Count {
			t.Errorf("mapping %+v leaves the subordinate range %+v", m, sub)
		}
		for h := m.HostID; h < m.HostID+m.Size; h++ {
			if usedHost[h] {
				t.Fatalf("host id %d mapped twice", h)
			}
			usedHost[h] = true
		}
	}
	if next > maxContainerIDs {
		t.Errorf("%d container ids mapped, more than %d", next, maxContainerIDs)
	}
}

func TestResolveIdentity(t *testing.T) {
	subs := []SubRange{{100000, 65536}}
	rootless := Host{UID: 1234, GID: 2345, Name: "alice", SubUIDs: subs, SubGIDs: subs, MappingTools: true}
	noTools := rootless
	noTools.MappingTools = false
	noSubs := Host{UID: 1234, GID: 2345, Name: "alice", MappingTools: true}
	onlyUIDs := rootless
	onlyUIDs.SubGIDs = nil
	tinyRange := rootless
	tinyRange.SubUIDs = []SubRange{{100000, 1}}
	root := Host{UID: 0, GID: 0, Name: "root", SubUIDs: subs, SubGIDs: subs}

	plan := func(mod func(*policy.Plan)) *policy.Plan {
		p := &policy.Plan{Name: "a", IDMap: policy.IDMapAuto}
		if mod != nil {
			mod(p)
		}
		return p
	}
	user := func(uid, gid uint32) func(*policy.Plan) {
		return func(p *policy.Plan) { p.User, p.UserSet = policy.User{UID: uid, GID: gid}, true }
	}
	single := func(p *policy.Plan) { p.IDMap = policy.IDMapSingle }

	tests := []struct {
		name     string
		plan     *policy.Plan
		host     Host
		wantKind string
		wantUser policy.User
		wantErr  []string // substrings of the error
	}{
		{"rootless with subids and tools", plan(nil), rootless, "subordinate", policy.User{UID: 1000, GID: 1000}, nil},
		{"explicit 1000:1000", plan(user(1000, 1000)), rootless, "subordinate", policy.User{UID: 1000, GID: 1000}, nil},
		{"explicit root with subids", plan(user(0, 0)), rootless, "subordinate", policy.User{}, nil},
		{"rootless without tools", plan(nil), noTools, "single", policy.User{}, nil},
		{"rootless without subids", plan(nil), noSubs, "single", policy.User{}, nil},
		{"only subuids", plan(nil), onlyUIDs, "single", policy.User{}, nil},
		{"range too small to use", plan(nil), tinyRange, "single", policy.User{}, nil},
		{"idmap single", plan(single), rootless, "single", policy.User{}, nil},
		{"explicit root, idmap single", plan(func(p *policy.Plan) { single(p); user(0, 0)(p) }), rootless, "single", policy.User{}, nil},
		{"root host needs no tools", plan(nil), root, "subordinate", policy.User{UID: 1000, GID: 1000}, nil},
		{"root host without subids", plan(nil), Host{Name: "root"}, "single", policy.User{}, nil},

		{"non-root user without subids", plan(user(1000, 1000)), noSubs, "", policy.User{},
			[]string{"user 1000:1000", "/etc/subuid", `"alice"`, "no subordinate ids"}},
		{"non-root user without tools", plan(user(1000, 1000)), noTools, "", policy.User{},
			[]string{"/etc/subuid", "newuidmap/newgidmap not found"}},
		{"non-root user with idmap single", plan(func(p *policy.Plan) { single(p); user(1000, 1000)(p) }), rootless, "", policy.User{},
			[]string{"/etc/subuid", "idmap: single"}},
		{"non-root group only", plan(user(0, 100)), noSubs, "", policy.User{}, []string{"user 0:100"}},
		{"user beyond the range", plan(user(70000, 70000)), rootless, "", policy.User{}, []string{"uid map", "70000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ResolveIdentity(tt.plan, tt.host)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, identity %+v", id)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if tt.plan.UserSet && !strings.Contains(tt.name, "beyond") && !errors.Is(err, ErrNeedsSubordinateIDs) {
					t.Errorf("error %q does not wrap ErrNeedsSubordinateIDs", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Kind != tt.wantKind || id.User != tt.wantUser {
				t.Errorf("kind %q user %+v, want %q %+v", id.Kind, id.User, tt.wantKind, tt.wantUser)
			}
			if id.HostUID != tt.host.UID || id.HostGID != tt.host.GID {
				t.Errorf("host ids %d:%d, want %d:%d", id.HostUID, id.HostGID, tt.host.UID, tt.host.GID)
			}
			// Whatever the kind, the agent's uid is the invoking user on
			// the host (keep-id), so read-write grants stay writable.
			if h, ok := hostOf(id.UIDMappings, id.User.UID); !ok || h != uint32(tt.host.UID) {
				t.Errorf("container uid %d maps to host %d (mapped %v), want %d", id.User.UID, h, ok, tt.host.UID)
			}
			if h, ok := hostOf(id.GIDMappings, id.User.GID); !ok || h != uint32(tt.host.GID) {
				t.Errorf("container gid %d maps to host %d (mapped %v), want %d", id.User.GID, h, ok, tt.host.GID)
			}
			switch id.Kind {
			case "single":
				want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(tt.host.UID), Size: 1}}
				if !reflect.DeepEqual(id.UIDMappings, want) {
					t.Errorf("uid map %+v, want %+v", id.UIDMappings, want)
				}
			case "subordinate":
				sub := tt.host.SubUIDs[0]
				checkMappings(t, id.UIDMappings, id.User.UID, uint32(tt.host.UID), sub)
				checkMappings(t, id.GIDMappings, id.User.GID, uint32(tt.host.GID), tt.host.SubGIDs[0])
				// Container root must be mapped: libcontainer needs it.
				if _, ok := hostOf(id.UIDMappings, 0); !ok {
					t.Error("container root is not mapped")
				}
			}
		})
	}
}

func TestResolveIdentitySkipsTinyRanges(t *testing.T) {
	h := Host{UID: 1234, GID: 1234, Name: "alice", MappingTools: true,
		SubUIDs: []SubRange{{100000, 1}, {200000, 65536}},
		SubGIDs: []SubRange{{300000, 65536}},
	}
	id, err := ResolveIdentity(&policy.Plan{IDMap: policy.IDMapAuto}, h)
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != "subordinate" || id.UIDMappings[0].HostID != 200000 || id.GIDMappings[0].HostID != 300000 {
		t.Errorf("identity %+v: want the first usable ranges 200000 (uid) and 300000 (gid)", id)
	}
}

func hostOf(ms []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && id < m.ContainerID+m.Size {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

func TestHostRootless(t *testing.T) {
	if (Host{UID: 0}).Rootless() || !(Host{UID: 1000}).Rootless() {
		t.Error("Rootless must be true exactly for a non-zero uid")
	}
}
