package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OwnedByMap is the ownership mode of a base whose files keep the image's
// uids and gids, shifted through one container's id map: a file the image
// gives to uid U belongs on the host to the id that the map gives U, so
// inside a container with that map it shows U again. Such a base fits only
// containers with exactly that map (the range and the agent id kept as the
// invoking user, which shifts the ids around it): the store keeps one base
// per map (see MappedStoreDir).
const OwnedByMap = "mapped"

// An image id beyond the map (a map holds at most 65536 ids) is given to
// the image's root instead: root of the container already owns the
// system's files, while nobody (65534), what the container would show for
// an unmapped id, is an identity agents run as (user: 65534), which would
// then own every such file, 0600 ones included.
const beyondMapOwner = 0

// IDMap maps the image's ids (ContainerID) to the ids its files get
// (HostID), as a container's user-namespace map does.
type IDMap struct {
	UIDs []specs.LinuxIDMapping `json:"uid_map"`
	GIDs []specs.LinuxIDMapping `json:"gid_map"`
}

// Key names the map in a store path: the same map is always the same key.
func (m IDMap) Key() string {
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Owner returns the ids a file of the image owned by uid:gid gets. An id
// the map lacks gets the ids of the image's root (beyondMapOwner);
// unmapped says that happened.
func (m IDMap) Owner(uid, gid int) (hostUID, hostGID int, unmapped bool, err error) {
	hostUID, okU := mapID(m.UIDs, uid)
	hostGID, okG := mapID(m.GIDs, gid)
	unmapped = !okU || !okG
	if !okU {
		if hostUID, okU = mapID(m.UIDs, beyondMapOwner); !okU {
			return 0, 0, false, fmt.Errorf("uid %d is beyond the id map %s, and so is root (0): the map cannot hold the image", uid, formatMap(m.UIDs))
		}
	}
	if !okG {
		if hostGID, okG = mapID(m.GIDs, beyondMapOwner); !okG {
			return 0, 0, false, fmt.Errorf("gid %d is beyond the id map %s, and so is root (0): the map cannot hold the image", gid, formatMap(m.GIDs))
		}
	}
	return hostUID, hostGID, unmapped, nil
}

// SameMap reports whether a and b are the same map, range by range; no
// map (nil, an unpacker base) is only the same as no map.
func SameMap(a, b *IDMap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key() == b.Key()
}

// String reads like "uid 0-999→100000-100999 1000→1001 1001-65534→101000-164533".
func (m IDMap) String() string {
	return "uid " + formatMap(m.UIDs) + ", gid " + formatMap(m.GIDs)
}

func mapID(ms []specs.LinuxIDMapping, id int) (int, bool) {
	if id < 0 {
		return 0, false
	}
	for _, r := range ms {
		if uint32(id) >= r.ContainerID && uint32(id)-r.ContainerID < r.Size {
			return int(r.HostID + uint32(id) - r.ContainerID), true
		}
	}
	return 0, false
}

func formatMap(ms []specs.LinuxIDMapping) string {
	parts := make([]string, 0, len(ms))
	for _, r := range ms {
		if r.Size == 1 {
			parts = append(parts, fmt.Sprintf("%d→%d", r.ContainerID, r.HostID))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d-%d→%d-%d", r.ContainerID, r.ContainerID+r.Size-1, r.HostID, r.HostID+r.Size-1))
	}
	return strings.Join(parts, " ")
}

// RemoveTree removes the tree at p, as rm and prune remove a base; for
// Store.RemoveTree hooks that run it elsewhere (in a user namespace).
func RemoveTree(p string) error { return removeTree(p) }
