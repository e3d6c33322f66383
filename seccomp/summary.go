package seccomp

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Summary returns a short human description of a profile, one line per fact:
// default action, architectures, how many syscalls are allowed, and every
// rule that filters on arguments or uses an action other than allow.
func Summary(p *specs.LinuxSeccomp) []string {
	if p == nil {
		return []string{"seccomp: none (every syscall allowed)"}
	}
	lines := []string{"default action: " + describeAction(p.DefaultAction, p.DefaultErrnoRet)}

	if len(p.Architectures) == 0 {
		lines = append(lines, "architectures: native only (none listed)")
	} else {
		arches := make([]string, len(p.Architectures))
		for i, a := range p.Architectures {
			arches[i] = string(a)
		}
		lines = append(lines, "architectures: "+strings.Join(arches, ", ")+" (calls through any other ABI are refused)")
	}

	always := map[string]bool{}
	filtered := map[string]bool{}
	// Rules with the same name and action are merged into one line; they
	// are alternatives (personality allows several values, one per rule).
	type key struct {
		name   string
		action string
	}
	var order []key
	alts := map[key][]string{}
	for _, sc := range p.Syscalls {
		act := describeAction(sc.Action, sc.ErrnoRet)
		for _, name := range sc.Names {
			if sc.Action == specs.ActAllow {
				if len(sc.Args) == 0 {
					always[name] = true
					continue
				}
				filtered[name] = true
			}
			k := key{name, act}
			if _, seen := alts[k]; !seen {
				order = append(order, k)
			}
			alts[k] = append(alts[k], describeArgs(name, sc.Args))
		}
	}
	for name := range always {
		delete(filtered, name)
	}
	switch p.DefaultAction {
	case specs.ActAllow:
		lines = append(lines, "allowed syscalls: all except those below")
	case specs.ActLog:
		lines = append(lines, fmt.Sprintf("allowed syscalls: %d (%d unconditionally, %d only with argument filters); every other call is allowed too and logged by the kernel (audit log or dmesg)",
			len(always)+len(filtered), len(always), len(filtered)))
	default:
		lines = append(lines, fmt.Sprintf("allowed syscalls: %d (%d unconditionally, %d only with argument filters)",
			len(always)+len(filtered), len(always), len(filtered)))
	}

	for _, k := range order {
		if k.action == describeAction(specs.ActAllow, nil) && always[k.name] {
			continue // an unconditional allow makes the filtered ones moot
		}
		conds := slices.DeleteFunc(slices.Clone(alts[k]), func(s string) bool { return s == "" })
		line := k.name + ": " + k.action
		switch {
		case len(conds) > maxSummaryAlternatives:
			// ioctl's allow rules are 34 masked patterns; the deny rules
			// next to them say what they leave out.
			line += fmt.Sprintf(" only if the arguments match one of %d patterns (`clawrun seccomp show` lists them)", len(conds))
		case len(conds) > 0:
			line += " only if " + strings.Join(conds, " or ")
		}
		lines = append(lines, line)
	}
	return lines
}

func describeAction(a specs.LinuxSeccompAction, errnoRet *uint) string {
	switch a {
	case specs.ActAllow:
		return "allowed"
	case specs.ActErrno, specs.ActTrace:
		errno := uint(errnoEPERM) // runc's default when none is given
		if errnoRet != nil {
			errno = *errnoRet
		}
		return fmt.Sprintf("%s (errno %d%s)", a, errno, errnoName(errno))
	}
	return string(a)
}

// maxSummaryAlternatives is the most argument alternatives Summary spells
// out on one line.
const maxSummaryAlternatives = 8

func errnoName(errno uint) string {
	if name, ok := errnoNames[errno]; ok {
		return ", " + name
	}
	return ""
}

// errnoNames are the errno values profiles commonly return (the same on
// every architecture clawrun supports).
var errnoNames = map[uint]string{
	errnoEPERM: "EPERM", 2: "ENOENT", 9: "EBADF", 13: "EACCES", 22: "EINVAL",
	errnoENOSYS: "ENOSYS", errnoEPROTONOSUPPORT: "EPROTONOSUPPORT", 95: "EOPNOTSUPP",
	errnoEAFNOSUPPORT: "EAFNOSUPPORT",
}

func describeArgs(name string, args []specs.LinuxSeccompArg) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = describeArg(a) + argNote(name, a)
	}
	return strings.Join(parts, " and ")
}

func describeArg(a specs.LinuxSeccompArg) string {
	arg := fmt.Sprintf("arg%d", a.Index)
	switch a.Op {
	case specs.OpMaskedEqual:
		return fmt.Sprintf("%s & %#x == %#x", arg, a.Value, a.ValueTwo)
	case specs.OpEqualTo:
		return fmt.Sprintf("%s == %#x", arg, a.Value)
	case specs.OpNotEqual:
		return fmt.Sprintf("%s != %#x", arg, a.Value)
	case specs.OpLessThan:
		return fmt.Sprintf("%s < %#x", arg, a.Value)
	case specs.OpLessEqual:
		return fmt.Sprintf("%s <= %#x", arg, a.Value)
	case specs.OpGreaterThan:
		return fmt.Sprintf("%s > %#x", arg, a.Value)
	case specs.OpGreaterEqual:
		return fmt.Sprintf("%s >= %#x", arg, a.Value)
	}
	return fmt.Sprintf("%s %s %#x", arg, a.Op, a.Value)
}

// argNote explains the argument filters this package's profiles use, so a
// reader of `inspect` need not decode the constants.
func argNote(name string, a specs.LinuxSeccompArg) string {
	switch {
	case name == "clone" && a.Index == 0 && a.Op == specs.OpMaskedEqual && a.Value == nsCloneFlags && a.ValueTwo == 0:
		return " (no new namespaces)"
	case (name == "mknod" || name == "mknodat") && a.Op == specs.OpMaskedEqual && a.Value == sIFMT && a.ValueTwo == 0:
		return " (regular file)"
	case a.Op == specs.OpEqualTo:
		if sym := symbolFor(name, a.Index, a.Value); sym != "" {
			return " (" + sym + ")"
		}
	case a.Op == specs.OpNotEqual:
		if sym := symbolFor(name, a.Index, a.Value); sym != "" {
			return " (not " + sym + ")"
		}
	case a.Op == specs.OpMaskedEqual:
		if sym := symbolFor(name, a.Index, a.ValueTwo); sym != "" {
			return " (" + sym + ")"
		}
	}
	return ""
}

// RuleLines describes every rule of a profile in order, one line each: the
// action, the syscall names, and the argument conditions (ANDed), e.g.
// "SCMP_ACT_ERRNO (errno 97, EAFNOSUPPORT): socket if arg0 == 0x2 (AF_INET)".
func RuleLines(p *specs.LinuxSeccomp) []string {
	if p == nil {
		return nil
	}
	lines := make([]string, 0, len(p.Syscalls))
	for _, sc := range p.Syscalls {
		line := describeAction(sc.Action, sc.ErrnoRet) + ": " + strings.Join(sc.Names, ", ")
		if len(sc.Args) > 0 {
			name := ""
			if len(sc.Names) == 1 {
				name = sc.Names[0]
			}
			line += " if " + describeArgs(name, sc.Args)
		}
		lines = append(lines, line)
	}
	return lines
}
