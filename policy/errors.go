package policy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// FieldError is one problem in an agent file or in ad-hoc run flags. File and
// Line are empty/zero for ad-hoc runs, where Field is the flag (--mount).
type FieldError struct {
	File  string // agent file as given to Load (clawrun.yaml)
	Line  int    // 1-based line, 0 when unknown
	Field string // dotted field path, e.g. agents.demo.limits.memory, or a flag
	Msg   string // what is wrong and what to do
	// Rule names the policy that refused the value (RuleBlocked, ...); it
	// is empty for problems with the file's schema or syntax.
	Rule string
}

// Error formats the problem as "file:line: field: msg (policy: rule)",
// leaving out the parts that are empty.
func (e *FieldError) Error() string {
	var s string
	if e.File != "" {
		s = e.File
		if e.Line > 0 {
			s += ":" + strconv.Itoa(e.Line)
		}
		s += ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	s += e.Msg
	if e.Rule != "" {
		s += " (policy: " + e.Rule + ")"
	}
	return s
}

// FieldErrors returns the *FieldError values inside err (as joined by Load
// and AdHoc), so a caller can count or list them one by one.
func FieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) && err == error(fe) {
		return []*FieldError{fe}
	}
	var out []*FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
		return out
	}
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return nil
}

// collector gathers every problem instead of stopping at the first, so
// `clawrun policy check` can show them all at once.
type collector struct {
	file string
	rule string // given to every problem added with add (the allowlist's)
	list []*FieldError
}

func (c *collector) add(line int, field, format string, args ...any) {
	c.addRule(line, field, c.rule, format, args...)
}

// addRule records a problem that a policy rule, not the schema, refused.
func (c *collector) addRule(line int, field, rule, format string, args ...any) {
	c.list = append(c.list, &FieldError{File: c.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Rule: rule})
}

func (c *collector) n() int { return len(c.list) }

// err returns the problems in line order, joined, or nil.
func (c *collector) err() error {
	if len(c.list) == 0 {
		return nil
	}
	sort.SliceStable(c.list, func(i, j int) bool { return c.list[i].Line < c.list[j].Line })
	errs := make([]error, len(c.list))
	for i, e := range c.list {
		errs[i] = e
	}
	return errors.Join(errs...)
}
