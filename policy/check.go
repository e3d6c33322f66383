package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// checker applies the host's rules (allowlist, blocked paths, self-edit
// protection) to the host paths of one agent file or ad-hoc run.
type checker struct {
	allow     *Allowlist
	agentDir  string // resolved directory allowed by Allowlist.AgentDir
	blocked   []pattern
	protected []protectedFile
	dataDir   string // clawrun's data directory, resolved; "" when not given
}

// protectedFile is a file no read-write grant may contain: an agent able
// to edit it could widen its own permissions.
type protectedFile struct {
	what  string   // "the agent file", "the allowlist", ...
	paths []string // as named (its directory resolved) and its target
}

// newChecker loads the allowlist (from the options, $CLAWRUN_ALLOWLIST or
// the default location) and builds the rules for an agent whose relative
// paths resolve against agentDir; agentFile is "" for ad-hoc runs.
func newChecker(o *options, agentDir, agentFile string) (*checker, error) {
	a := o.allowlist
	if a == nil {
		var err error
		if o.allowlistFile != "" {
			a, err = LoadAllowlist(o.allowlistFile)
		} else {
			a, err = FindAllowlist()
		}
		if err != nil {
			return nil, err
		}
	}
	ck := &checker{allow: a, agentDir: resolveExisting(filepath.Clean(agentDir))}
	dirs := append(defaultClawrunDirs(), o.clawrunDirs...)
	ck.blocked = blockedPatterns(a, dirs)
	if o.dataDir != "" {
		if abs, err := filepath.Abs(o.dataDir); err == nil {
			ck.dataDir = resolveExisting(abs)
		}
	}
	if agentFile != "" {
		ck.protect("the agent file", agentFile)
	}
	if a.Path != "" {
		ck.protect("the allowlist", a.Path)
	}
	if o.executable != "" {
		ck.protect("the clawrun binary", o.executable)
	}
	return ck, nil
}

// protect adds a file that no read-write grant may contain.
func (ck *checker) protect(what, p string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return
	}
	named := filepath.Join(resolveExisting(filepath.Dir(abs)), filepath.Base(abs))
	pf := protectedFile{what: what, paths: []string{named}}
	if r, err := filepath.EvalSymlinks(abs); err == nil && r != named {
		pf.paths = append(pf.paths, r)
	}
	ck.protected = append(ck.protected, pf)
}

// issue is one problem with a grant; part says which field it concerns
// ("host", "path", "mode"), or "" for the grant as a whole.
type issue struct {
	part string
	rule string
	msg  string
}

func newIssue(part, rule, format string, args ...any) issue {
	return issue{part: part, rule: rule, msg: fmt.Sprintf(format, args...)}
}

// grant resolves the grant host:cpath:mode written by a user (host relative
// to base) and checks it against every rule but self-edit protection
// (selfEdit). It is the one grant resolver
// shared by agent files and --mount; the Grant is valid only when no issue
// is returned.
func (ck *checker) grant(base, host, cpath, mode string) (Grant, []issue) {
	g := Grant{Mode: ReadOnly}
	var out []issue
	if mode != "" {
		md, err := parseMode(mode)
		if err != nil {
			out = append(out, newIssue("mode", "", "%v", err))
		}
		g.Mode = md
	}
	if cp, err := containerPath(cpath); err != nil {
		out = append(out, newIssue("path", RuleContainerPath, "%v", err))
	} else {
		g.Path = cp
	}
	r, hostIssues := ck.host(base, host, g.Mode)
	g.Host = r
	return g, append(out, hostIssues...)
}

// host resolves a grant's host path and checks it for a grant of mode.
// Self-edit protection is left to the caller (selfEdit), which knows every
// protected file only once the whole agent file was read.
func (ck *checker) host(base, s string, mode Mode) (string, []issue) {
	if err := checkPathChars(s); err != nil {
		return "", []issue{newIssue("host", RuleHostPath, "host path %q %v", s, err)}
	}
	r, err := resolveHost(base, s)
	if err != nil {
		return "", []issue{newIssue("host", RuleHostPath, "%v", err)}
	}
	named := s
	if !filepath.IsAbs(named) {
		named = filepath.Join(base, named)
	}
	named = filepath.Clean(named)

	// Blocked paths come first: no allowlist can make them grantable. The
	// walk for blocked names below a directory is the only costly check,
	// so it runs last, for grants that passed everything else.
	blocked := func(r string) []issue {
		for _, p := range []string{named, r} {
			if pat, hit := blockedAt(ck.blocked, p); hit {
				return []issue{newIssue("host", RuleBlocked, "%s refused: it matches %s; no grant may reach it", describeHost(s, r), pat.describe())}
			}
		}
		if hits := blockedNamed(ck.blocked, r); len(hits) > 0 {
			return []issue{blockedIssue(s, r, hits)}
		}
		return nil
	}
	if is := blocked(r); is != nil {
		return "", is
	}
	// r gave the friendly messages above; the path used from here on is the
	// one resolved under the symlink rule, checked again in case a link was
	// swapped in meanwhile.
	r, err = resolveChecked(named)
	if err != nil {
		var se *symlinkError
		if errors.As(err, &se) {
			return "", []issue{newIssue("host", RuleHostPath, "host %q refused: %v", s, err)}
		}
		return "", []issue{newIssue("host", RuleHostPath, "host path %q cannot be resolved: %v", s, err)}
	}
	if is := blocked(r); is != nil {
		return "", is
	}
	var out []issue
	if max, root := ck.allowedMode(r); max == "" {
		out = append(out, newIssue("host", RuleAllowlist, "%s is outside every allowed root (%s): grant a path inside one, or add a root for it to %s", describeHost(s, r), ck.allow.describe(ck.agentDir), ck.allow.where()))
	} else if mode == ReadWrite && max != ReadWrite {
		out = append(out, newIssue("mode", RuleAllowlist, "read-write grant of %s refused: %s allows at most ro under %s: use mode: ro, or allow rw there in %s", r, ck.allowlistName(), root, ck.allow.where()))
	}
	if len(out) > 0 {
		return "", out
	}
	if fi, err := os.Stat(r); err == nil && fi.IsDir() {
		hits, err := blockedWalk(ck.blocked, r)
		if len(hits) > 0 {
			return "", []issue{blockedIssue(s, r, hits)}
		}
		if err != nil {
			return "", []issue{newIssue("host", RuleBlocked, "%s refused: it %v; grant a narrower directory", describeHost(s, r), err)}
		}
	}
	return r, nil
}

// rootfs checks a resolved root filesystem against the blocked paths. A
// root filesystem is mounted read-only and needs no allowlist root, but
// "rootfs: /" or a home directory would expose everything a grant may not;
// only the paths named outright are checked, since walking a whole
// distribution on every run is too slow (and a rootfs holds keys of its own).
func (ck *checker) rootfs(s, r string) *issue {
	if pat, hit := blockedAt(ck.blocked, r); hit {
		is := newIssue("", RuleBlocked, "root filesystem %s refused: it matches %s", describePath(s, r), pat.describe())
		return &is
	}
	comps := components(r)
	for _, pat := range ck.blocked {
		if pat.holds(comps) {
			is := newIssue("", RuleBlocked, "root filesystem %s refused: it contains /%s, which matches %s: point rootfs at a directory holding only the agent's root filesystem", describePath(s, r), strings.Join(pat.parts, "/"), pat.describe())
			return &is
		}
	}
	return nil
}

// selfEdit refuses a read-write grant of r that contains a protected file.
func (ck *checker) selfEdit(r string) []issue {
	var out []issue
	for _, pf := range ck.protected {
		for _, p := range pf.paths {
			if within(p, r) {
				out = append(out, newIssue("", RuleSelfEdit, "read-write grant of %s contains %s %s: an agent must not be able to edit its own permissions; grant a narrower directory, make it ro, or move %s out", r, pf.what, p, pf.what))
				break
			}
		}
	}
	return out
}

// allowedMode returns the strongest mode allowed for the resolved host path
// r and the root that decided it, or "" when no root holds r. The deepest
// root holding r decides, so an allowlist can narrow a subtree to ro.
func (ck *checker) allowedMode(r string) (Mode, string) {
	var best Mode
	bestRoot := ""
	consider := func(root string, m Mode) {
		if m == "" || !within(r, root) {
			return
		}
		if bestRoot == "" || len(root) > len(bestRoot) {
			best, bestRoot = m, root
		}
	}
	if ck.agentDir != "/" {
		consider(ck.agentDir, ck.allow.AgentDir)
	}
	for _, root := range ck.allow.Roots {
		consider(root.Path, root.Mode)
	}
	return best, bestRoot
}

func (ck *checker) allowlistName() string {
	if ck.allow.Default {
		return "the default allowlist"
	}
	return "the allowlist " + ck.allow.Path
}

func blockedIssue(s, r string, hits []blockedHit) issue {
	var list []string
	for _, h := range hits {
		list = append(list, fmt.Sprintf("%s (%s)", h.path, h.pat.describe()))
	}
	return newIssue("host", RuleBlocked, "%s refused: it contains %s; blocked paths are never masked, so grant narrower directories that hold none of them", describeHost(s, r), strings.Join(list, ", "))
}

// describeHost names a host path as written and, when different, as resolved.
func describeHost(s, r string) string { return "host " + describePath(s, r) }

func describePath(s, r string) string {
	if s == r {
		return r
	}
	return fmt.Sprintf("%q (%s)", s, r)
}

// resolveChecked resolves the symlinks of the clean absolute path p one
// component at a time and refuses a symlink whose target leaves the
// directory holding it. An agent with a read-write grant can plant symlinks
// anywhere inside it; confined to their own directory, such links can only
// point where the agent can already reach, never redirect a later grant to
// another agent's files or the host. The result is built from the very
// observations that were checked (one Lstat per component), so a link
// swapped in while clawrun looks cannot slip between check and result; the
// runtime then opens the result refusing any symlink at all. Root-owned
// links (/var/run, /lib64) cannot have been planted by a rootless agent,
// whose ids map to the user and subordinate ids, and are followed when
// clawrun runs rootless.
func resolveChecked(p string) (string, error) {
	const maxLinks = 40 // as the kernel's MAXSYMLINKS
	comps := components(p)
	cur, links := "/", 0
	for len(comps) > 0 {
		next := filepath.Join(cur, comps[0])
		comps = comps[1:]
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("too many levels of symlinks at %s", next)
		}
		t, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(cur, t) // cur holds no symlink, so ".." here is physical
		}
		t = filepath.Clean(t)
		if !within(t, cur) && !rootOwnedRootless(fi) {
			rest := filepath.Join(append([]string{t}, comps...)...)
			return "", &symlinkError{link: next, target: t, real: rest}
		}
		comps = append(components(t), comps...)
		cur = "/"
	}
	return cur, nil
}

type symlinkError struct{ link, target, real string }

func (e *symlinkError) Error() string {
	return fmt.Sprintf("it passes through the symlink %s, which points out of its directory to %s; a symlink in a grant path may only point within its own directory, so that one planted by an agent cannot redirect a grant: write the real path %s if that is what you mean", e.link, e.target, e.real)
}

func rootOwnedRootless(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0 && os.Geteuid() != 0
}

// checkPathChars refuses control characters: a newline or NUL in a path
// would split or truncate it in mount tables, logs and the OCI spec.
func checkPathChars(s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains a control character (%q): a path may not hold newlines, NUL or other control characters", r)
		}
	}
	return nil
}
