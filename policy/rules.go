package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Defaults and bounds of the agent file schema.
const (
	DefaultPath    = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	DefaultHome    = "/"
	DefaultWorkdir = "/"
	DefaultSeccomp = "agent"
	DefaultTmpSize = 64 << 20 // bytes
	MinMemory      = 4 << 20  // bytes; below this an agent cannot even start
	MinTmpSize     = 1 << 20  // bytes
	MaxCPUs        = 1024
)

// The rules below are shared by Load and AdHoc: each takes the text a user
// wrote and returns the resolved value or an error whose message says what to
// do. The caller adds where (file:line: field, or the flag).

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// ValidName reports whether name may name an agent or container.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid name %q: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// defaultHostname turns a valid agent name into a valid hostname label:
// '_' and '.' are not allowed in a label, so they become '-'.
func defaultHostname(name string) string {
	h := strings.Map(func(r rune) rune {
		if r == '_' || r == '.' {
			return '-'
		}
		return r
	}, name)
	if len(h) > 63 {
		h = h[:63]
	}
	h = strings.TrimRight(h, "-")
	if h == "" {
		return "agent"
	}
	return h
}

func checkHostname(h string) error {
	if !hostnameRE.MatchString(h) {
		return fmt.Errorf("invalid hostname %q: use 1 to 63 letters, digits or '-', not starting or ending with '-'", h)
	}
	return nil
}

// resolveHost makes a host path absolute (relative to base), cleans it and
// resolves symlinks, so the Plan names the real object that will be mounted.
func resolveHost(base, s string) (string, error) {
	if s == "" {
		return "", errors.New("is empty: give a host path")
	}
	p := s
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	p = filepath.Clean(p)
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			hint := "create it or correct the path"
			if strings.HasPrefix(s, "~") {
				hint = "~ is not expanded: write the absolute path"
			} else if !filepath.IsAbs(s) {
				hint = "relative paths are resolved against " + base + "; " + hint
			}
			return "", fmt.Errorf("host path %q does not exist (looked for %s): %s", s, p, hint)
		}
		return "", fmt.Errorf("host path %q cannot be resolved: %w", s, err)
	}
	return r, nil
}

// resolveRootfs is resolveHost for a root filesystem, which must be a directory.
func resolveRootfs(base, s string) (string, error) {
	r, err := resolveHost(base, s)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(r)
	if err != nil {
		return "", fmt.Errorf("root filesystem %q: %w", s, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("root filesystem %q (%s) is not a directory: point it at an unpacked root filesystem", s, r)
	}
	return r, nil
}

// reservedPaths are container paths the runtime mounts itself; a grant there
// would hide or replace the kernel's view the sandbox depends on.
var reservedPaths = []string{"/proc", "/sys", "/dev"}

// containerPath validates and cleans an absolute path inside the container
// where a grant is mounted.
func containerPath(s string) (string, error) {
	if s == "" {
		return "", errors.New("is empty: give an absolute path inside the container, e.g. /data")
	}
	if err := checkPathChars(s); err != nil {
		return "", fmt.Errorf("%q %v", s, err)
	}
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("%q is not absolute: container paths start with /, e.g. /%s", s, strings.TrimPrefix(s, "./"))
	}
	p := filepath.Clean(s)
	if p == "/" {
		return "", errors.New("cannot mount a grant over / (the root filesystem): choose a directory such as /data")
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return "", fmt.Errorf("%s is inside %s, which the runtime provides and a grant may not replace: choose another path such as /data", p, r)
		}
	}
	return p, nil
}

func parseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ReadOnly, ReadWrite:
		return Mode(s), nil
	}
	return "", fmt.Errorf("invalid mode %q: use ro (read-only, the default) or rw (read-write)", s)
}

// parseUser parses "uid" or "uid:gid". A lone uid also becomes the gid, so an
// agent never lands in group 0 by accident.
func parseUser(s string) (User, error) {
	bad := func() (User, error) {
		return User{}, fmt.Errorf("invalid user %q: use a numeric uid or uid:gid, e.g. 1000:1000", s)
	}
	us, gs, hasGID := strings.Cut(s, ":")
	if !hasGID {
		gs = us
	}
	id := func(t string) (uint32, bool) {
		n, err := strconv.ParseUint(t, 10, 32)
		// 2^32-1 is (uid_t)-1, "no id", never a real user.
		return uint32(n), err == nil && n != math.MaxUint32
	}
	uid, ok1 := id(us)
	gid, ok2 := id(gs)
	if !ok1 || !ok2 {
		return bad()
	}
	return User{UID: uid, GID: gid}, nil
}

func checkEnvKey(k string) error {
	if !envKeyRE.MatchString(k) {
		return fmt.Errorf("invalid variable name %q: use letters, digits and '_', not starting with a digit", k)
	}
	return nil
}

func checkEnvValue(k, v string) error {
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("value of %s contains a NUL byte, which an environment cannot hold", k)
	}
	return nil
}

// buildEnv renders vars as sorted KEY=value lines with PATH and HOME defaulted.
func buildEnv(vars map[string]string) []string {
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = DefaultPath
	}
	if _, ok := vars["HOME"]; !ok {
		vars["HOME"] = DefaultHome
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, len(keys))
	for i, k := range keys {
		env[i] = k + "=" + vars[k]
	}
	return env
}

func parseWorkdir(s string) (string, error) {
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("%q is not absolute: the working directory is a path inside the container, e.g. /work", s)
	}
	return filepath.Clean(s), nil
}

func checkArg(s string) error {
	if strings.ContainsRune(s, 0) {
		return errors.New("contains a NUL byte, which a command argument cannot hold")
	}
	return nil
}

func parseMemory(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n < MinMemory {
		return 0, fmt.Errorf("memory %q is below the minimum of %s: give at least 4M, or leave memory out for no limit", s, formatSize(MinMemory))
	}
	return n, nil
}

func parseTmpSize(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n < MinTmpSize {
		return 0, fmt.Errorf("tmp size %q is below the minimum of %s", s, formatSize(MinTmpSize))
	}
	return n, nil
}

func checkCPUs(f float64) error {
	// The kernel's smallest CFS quota is 1ms per 100ms period: below 0.01
	// cores the quota would be refused, or round to 0 and mean "no limit".
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0.01 || f > MaxCPUs {
		return fmt.Errorf("invalid cpus %v: give a number of cores from 0.01 to %d, e.g. 0.5", f, MaxCPUs)
	}
	return nil
}

func checkPids(n int64) error {
	if n < 1 {
		return fmt.Errorf("invalid pids %d: give the maximum number of tasks, at least 1, e.g. 64", n)
	}
	return nil
}

func parseEnforce(s string) (Enforce, error) {
	switch Enforce(s) {
	case EnforceStrict, EnforceBestEffort:
		return Enforce(s), nil
	}
	return "", fmt.Errorf("invalid enforce %q: use strict (refuse to run when the host cannot enforce a limit, the default) or best-effort (approximate such limits with rlimits)", s)
}

func parseIDMap(s string) (IDMap, error) {
	switch IDMap(s) {
	case IDMapAuto, IDMapSingle:
		return IDMap(s), nil
	}
	return "", fmt.Errorf("invalid idmap %q: use auto (subordinate ids when available) or single (one id)", s)
}

// within reports whether p is dir or lies below it; both are clean and absolute.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// newPlan returns a Plan with every default filled in.
func newPlan(name string) *Plan {
	return &Plan{
		Name:     name,
		Workdir:  DefaultWorkdir,
		Network:  NetworkNone,
		Seccomp:  DefaultSeccomp,
		TmpSize:  DefaultTmpSize,
		IDMap:    IDMapAuto,
		Hostname: defaultHostname(name),
	}
}
