package rootfs

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// LookupUser resolves an image's User ("uid", "uid:gid", "name",
// "name:group", as in the OCI image config) to numeric ids, reading names
// from /etc/passwd and /etc/group inside the root filesystem root (scoped:
// a symlinked /etc/passwd never reaches the host's). A user given without
// a group gets the primary group from /etc/passwd, or its uid's number
// when /etc/passwd does not list it.
func LookupUser(root, spec string) (uid, gid uint32, err error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	if u == "" {
		return 0, 0, fmt.Errorf("image user %q names no user", spec)
	}
	var primary uint32
	var havePrimary bool
	if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		uid = uint32(n)
		if e, ok := findEntry(root, "/etc/passwd", func(f []string) bool { return len(f) > 3 && f[2] == u }); ok {
			if n, err := strconv.ParseUint(e[3], 10, 32); err == nil {
				primary, havePrimary = uint32(n), true
			}
		}
	} else {
		e, ok := findEntry(root, "/etc/passwd", func(f []string) bool { return len(f) > 3 && f[0] == u })
		if !ok {
			return 0, 0, fmt.Errorf("image user %q: no such user in the image's /etc/passwd", spec)
		}
		n, err1 := strconv.ParseUint(e[2], 10, 32)
		m, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("image user %q: malformed /etc/passwd entry", spec)
		}
		uid, primary, havePrimary = uint32(n), uint32(m), true
	}
	switch {
	case !hasGroup && havePrimary:
		return uid, primary, nil
	case !hasGroup:
		return uid, uid, nil
	}
	if n, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uid, uint32(n), nil
	}
	e, ok := findEntry(root, "/etc/group", func(f []string) bool { return len(f) > 2 && f[0] == g })
	if !ok {
		return 0, 0, fmt.Errorf("image user %q: no group %q in the image's /etc/group", spec, g)
	}
	n, err := strconv.ParseUint(e[2], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("image user %q: malformed /etc/group entry", spec)
	}
	return uid, uint32(n), nil
}

func findEntry(root, file string, match func([]string) bool) ([]string, bool) {
	p, err := securejoin.SecureJoin(root, file)
	if err != nil {
		return nil, false
	}
	// Only a regular file: a fifo planted as /etc/passwd would block.
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if match(fields) {
			return fields, true
		}
	}
	return nil, false
}
