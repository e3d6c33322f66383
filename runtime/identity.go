package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
)

// DefaultAgentID is the uid and gid an agent runs as inside its container when
// the agent file does not say and subordinate ids are available.
const DefaultAgentID = 1000

// maxContainerIDs bounds how many subordinate ids one container maps: enough
// for ordinary images (nobody is 65534) without eating a user's whole range.
const maxContainerIDs = 65536

// SubRange is one line of /etc/subuid or /etc/subgid for the host user.
type SubRange struct {
	Start int64
	Count int64
}

// Host describes who runs clawrun and which ids it may map.
type Host struct {
	UID, GID     int
	Name         string
	SubUIDs      []SubRange
	SubGIDs      []SubRange
	MappingTools bool // newuidmap and newgidmap are on PATH (needed rootless)
}

// Rootless reports whether clawrun runs without host root.
func (h Host) Rootless() bool { return h.UID != 0 }

// CurrentHost reads the invoking user's ids and subordinate ranges.
func CurrentHost() Host {
	h := Host{UID: os.Geteuid(), GID: os.Getegid()}
	if u, err := user.LookupId(strconv.Itoa(h.UID)); err == nil {
		h.Name = u.Username
	}
	h.SubUIDs = readSubIDs("/etc/subuid", h.Name, h.UID)
	h.SubGIDs = readSubIDs("/etc/subgid", h.Name, h.UID)
	_, errU := exec.LookPath("newuidmap")
	_, errG := exec.LookPath("newgidmap")
	h.MappingTools = errU == nil && errG == nil
	return h
}

func readSubIDs(path, name string, uid int) []SubRange {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseSubIDs(f, name, uid)
}

// parseSubIDs parses the shadow-utils subid format "user:start:count"; the
// owner may be given by name or by numeric uid.
func parseSubIDs(r io.Reader, name string, uid int) []SubRange {
	var out []SubRange
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "" || (parts[0] != name && parts[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.ParseInt(parts[1], 10, 64)
		count, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil || start < 0 || count <= 0 || start+count > 1<<32 {
			continue
		}
		out = append(out, SubRange{Start: start, Count: count})
	}
	return out
}

// Identity is how the agent's ids relate to host ids.
type Identity struct {
	// Kind is "subordinate" (ranges from /etc/subuid and /etc/subgid) or
	// "single" (only the invoking user is mapped).
	Kind string `json:"kind"`
	// User is the uid:gid the agent process runs as inside.
	User policy.User `json:"user"`
	// HostUID and HostGID are what User is on the host: always the invoking
	// user, so read-write grants are writable and what the agent writes
	// there belongs to that user (Podman's keep-id).
	HostUID     int                    `json:"host_uid"`
	HostGID     int                    `json:"host_gid"`
	UIDMappings []specs.LinuxIDMapping `json:"uid_mappings"`
	GIDMappings []specs.LinuxIDMapping `json:"gid_mappings"`
}

// ErrNeedsSubordinateIDs is returned when an agent asks for a non-root user
// but the host user has no subordinate ids to map the rest of the container.
var ErrNeedsSubordinateIDs = errors.New("needs subordinate ids")

// ResolveIdentity decides the user-namespace mapping for a plan on a host.
//
// The container's root must always be mapped (libcontainer becomes root in
// the new namespace to set it up), so a single-id map can only run the agent
// as root-in-the-namespace, which is the host user with no capabilities. With
// subordinate ids the agent runs as a non-root uid mapped to the host user and
// every other container id maps into the subordinate range.
func ResolveIdentity(p *policy.Plan, h Host) (*Identity, error) {
	subUID, okU := firstRange(h.SubUIDs)
	subGID, okG := firstRange(h.SubGIDs)
	haveSub := okU && okG && (!h.Rootless() || h.MappingTools)
	if p.IDMap == policy.IDMapSingle {
		haveSub = false
	}
	if !haveSub {
		if p.UserSet && (p.User.UID != 0 || p.User.GID != 0) {
			return nil, fmt.Errorf("user %d:%d %w: add a range for %q to /etc/subuid and /etc/subgid and install newuidmap/newgidmap (Debian: uidmap), or set \"user: 0\" in the agent file to run as the mapped host user (uid 0 inside, no capabilities; needed too when the user comes from an image): %w",
				p.User.UID, p.User.GID, ErrNeedsSubordinateIDs, h.Name, errSingleReason(p, okU && okG, h))
		}
		return &Identity{
			Kind:        "single",
			User:        policy.User{},
			HostUID:     h.UID,
			HostGID:     h.GID,
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.UID), Size: 1}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.GID), Size: 1}},
		}, nil
	}
	u := policy.User{UID: DefaultAgentID, GID: DefaultAgentID}
	if p.UserSet {
		u = p.User
	}
	uids, err := keepIDMappings(u.UID, uint32(h.UID), subUID)
	if err != nil {
		return nil, fmt.Errorf("uid map: %w", err)
	}
	gids, err := keepIDMappings(u.GID, uint32(h.GID), subGID)
	if err != nil {
		return nil, fmt.Errorf("gid map: %w", err)
	}
	return &Identity{Kind: "subordinate", User: u, HostUID: h.UID, HostGID: h.GID, UIDMappings: uids, GIDMappings: gids}, nil
}

// ImageMap is the map through which an image base for this identity keeps
// the image's uids and gids: the container's own map, so that a file shows
// inside with the ids the image gave it. A single-id map has no id to give
// the image's other users, so its bases stay the unpacker's (nil). As root
// this is the same map as the container's: the image's ids land in root's
// subordinate range and the kept agent id on root itself, never on another
// real user of the host.
func (id *Identity) ImageMap() *rootfs.IDMap {
	if id == nil || id.Kind != "subordinate" {
		return nil
	}
	return &rootfs.IDMap{UIDs: id.UIDMappings, GIDs: id.GIDMappings}
}

func errSingleReason(p *policy.Plan, haveRanges bool, h Host) error {
	switch {
	case p.IDMap == policy.IDMapSingle:
		return errors.New("the agent file sets idmap: single")
	case !haveRanges:
		return fmt.Errorf("no subordinate ids for user %q", h.Name)
	default:
		return errors.New("newuidmap/newgidmap not found on PATH")
	}
}

func firstRange(rs []SubRange) (SubRange, bool) {
	for _, r := range rs {
		if r.Count >= 2 {
			return r, true
		}
	}
	return SubRange{}, false
}

// keepIDMappings maps container id `keep` to host id `host` and fills the
// ids around it from the subordinate range, in order.
func keepIDMappings(keep, host uint32, sub SubRange) ([]specs.LinuxIDMapping, error) {
	size := sub.Count
	if size > maxContainerIDs-1 {
		size = maxContainerIDs - 1
	}
	if int64(keep) > size {
		return nil, fmt.Errorf("container id %d is beyond the %d subordinate ids available", keep, size)
	}
	var m []specs.LinuxIDMapping
	if keep > 0 {
		m = append(m, specs.LinuxIDMapping{ContainerID: 0, HostID: uint32(sub.Start), Size: keep})
	}
	m = append(m, specs.LinuxIDMapping{ContainerID: keep, HostID: host, Size: 1})
	if rest := uint32(size) - keep; rest > 0 {
		m = append(m, specs.LinuxIDMapping{ContainerID: keep + 1, HostID: uint32(sub.Start) + keep, Size: rest})
	}
	return m, nil
}
