package policy

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clawrun/clawrun/seccomp"
)

// CustomSeccompPrefix marks a Plan.Seccomp that names a custom profile
// file: "custom:/abs/path/profile.json" (seccomp.Resolve reads it).
const CustomSeccompPrefix = seccomp.CustomPrefix

var seccompFields = []string{"custom"}

// seccompField reads agents.NAME.seccomp: a profile name, or a custom
// profile file as "custom:./profile.json" or {custom: ./profile.json},
// resolved against the agent file's directory.
func (l *loader) seccompField(v *yaml.Node, path string) (string, bool) {
	n := deref(v)
	if n.Kind == yaml.ScalarNode {
		if rest, ok := strings.CutPrefix(n.Value, CustomSeccompPrefix); ok {
			return l.customSeccomp(n, path, strings.TrimSpace(rest))
		}
		s, err := parseSeccomp(n.Value)
		if err != nil {
			l.c.addRule(n.Line, path, RuleSeccomp, "%v", err)
			return "", false
		}
		return s, true
	}
	if n.Kind != yaml.MappingNode {
		l.c.add(n.Line, path, "must be a profile name (%s) or custom:./profile.json, not %s", strings.Join(seccomp.Names(), ", "), describe(n))
		return "", false
	}
	m := l.mapping(n, path, seccompFields)
	if m == nil {
		return "", false
	}
	cv := m.get("custom")
	if cv == nil {
		l.c.add(m.line, path+".custom", "missing: give the OCI seccomp profile file, e.g. seccomp: {custom: ./profile.json}")
		return "", false
	}
	s, ok := l.scalar(cv, path+".custom", "a path")
	if !ok {
		return "", false
	}
	return l.customSeccomp(cv, path+".custom", s)
}

// customSeccomp resolves and checks a custom profile file named at node n.
func (l *loader) customSeccomp(cv *yaml.Node, field, s string) (string, bool) {
	path := field
	if s == "" {
		l.c.addRule(cv.Line, path, RuleSeccomp, "no file after %q: write seccomp: custom:./profile.json", CustomSeccompPrefix)
		return "", false
	}
	if err := checkPathChars(s); err != nil {
		l.c.addRule(cv.Line, path, RuleSeccomp, "%q %v", s, err)
		return "", false
	}
	r, err := resolveHost(l.dir, s)
	if err != nil {
		l.c.addRule(cv.Line, path, RuleSeccomp, "custom profile: %v", err)
		return "", false
	}
	if err := checkCustomProfile(r); err != nil {
		l.c.addRule(cv.Line, path, RuleSeccomp, "%v", err)
		return "", false
	}
	// An agent that can rewrite its seccomp profile can lift it.
	l.ck.protect("the seccomp profile "+r, r)
	return CustomSeccompPrefix + r, true
}

func parseSeccomp(s string) (string, error) {
	names := seccomp.Names()
	if slices.Contains(names, s) {
		return s, nil
	}
	if s == "custom" {
		return "", fmt.Errorf("seccomp profile %q: name the file, e.g. seccomp: custom:./profile.json", s)
	}
	msg := fmt.Sprintf("seccomp profile %q is not supported: use one of %s", s, strings.Join(names, ", "))
	if c := closest(s, names); c != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", c)
	}
	return "", fmt.Errorf("%s, or custom:./profile.json", msg)
}

// checkCustomProfile refuses anything but a regular file (a FIFO would
// hang the load) and leaves the profile's content to seccomp.LoadCustom:
// OCI LinuxSeccomp JSON, known actions, and syscall names libseccomp knows.
func checkCustomProfile(p string) error {
	for _, r := range reservedPaths {
		// Kernel files such as /proc/kmsg look regular but block on read.
		if within(p, r) {
			return fmt.Errorf("custom seccomp profile %s is inside %s: keep the profile in an ordinary file", p, r)
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("custom seccomp profile %s is not a regular file", p)
	}
	_, err = seccomp.LoadCustom(p)
	return err
}
