package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Defaults and bounds of an agent's Slack route.
const (
	DefaultSlackConcurrency = 1
	DefaultSlackQueueLimit  = 100
	MaxSlackConcurrency     = 64
	MaxSlackQueueLimit      = 100000
)

var (
	slackFields    = []string{"api_url"}
	slackRouteKeys = []string{"channels", "dm", "mentions_only", "users", "post_to", "concurrency", "queue_limit"}

	// Slack IDs are upper-case letters and digits after a type letter:
	// C (public channel), G (private channel or group DM), D (direct
	// message); U or W (user, W on Enterprise Grid).
	channelIDRE = regexp.MustCompile(`^[CGD][A-Z0-9]{1,31}$`)
	userIDRE    = regexp.MustCompile(`^[UW][A-Z0-9]{1,31}$`)
)

// slackTop reads the file's top-level slack: section.
func (l *loader) slackTop(v *yaml.Node) string {
	m := l.mapping(v, "slack", slackFields)
	if m == nil {
		return ""
	}
	var api string
	l.text(m, "slack", "api_url", "a URL such as https://slack.com/api/", func(s string) error {
		if err := checkSlackURL(s); err != nil {
			return err
		}
		api = s
		return nil
	})
	return api
}

func checkSlackURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid api_url %q: give the Web API base URL with http or https and a host, e.g. https://slack.com/api/", s)
	}
	return nil
}

// slackRoute reads agents.NAME.slack.
func (l *loader) slackRoute(v *yaml.Node, path string) *SlackRoute {
	m := l.mapping(v, path, slackRouteKeys)
	if m == nil {
		return nil
	}
	before := l.c.n()
	r := &SlackRoute{Concurrency: DefaultSlackConcurrency, QueueLimit: DefaultSlackQueueLimit}
	if n := m.get("channels"); n != nil {
		r.Channels = l.slackIDs(n, path+".channels", channelIDRE, "channel", "C0123ABC")
	}
	if n := m.get("users"); n != nil {
		r.Users = l.slackIDs(n, path+".users", userIDRE, "user", "U0123ABC")
	}
	if n := m.get("post_to"); n != nil {
		r.PostTo = l.slackIDs(n, path+".post_to", channelIDRE, "channel", "C0123ABC")
	}
	l.boolField(m, path, "dm", &r.DM)
	l.boolField(m, path, "mentions_only", &r.MentionsOnly)
	l.intField(m, path, "concurrency", 1, MaxSlackConcurrency, &r.Concurrency)
	l.intField(m, path, "queue_limit", 1, MaxSlackQueueLimit, &r.QueueLimit)
	if l.c.n() == before && len(r.Channels) == 0 && !r.DM {
		l.c.addRule(m.line, path, RuleSlack, "the route matches no message: add channels: [C0123ABC] or dm: true, or remove the slack section")
	}
	return r
}

// slackIDs reads a list of Slack IDs of one kind, refusing names such as
// "#general": routes use IDs, which survive renames.
func (l *loader) slackIDs(v *yaml.Node, path string, re *regexp.Regexp, kind, example string) []string {
	items := l.stringList(v, path, fmt.Sprintf("a list of %s IDs, e.g. [%s]", kind, example))
	var out []string
	seen := map[string]int{}
	for i, it := range items {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if !re.MatchString(it.text) {
			first := "C, G or D"
			if kind == "user" {
				first = "U or W"
			}
			l.c.addRule(it.line, ip, RuleSlack, "%q is not a Slack %s ID: IDs start with %s followed by upper-case letters and digits, e.g. %s (Slack shows a channel's ID under its details, a user's in their profile)", it.text, kind, first, example)
			continue
		}
		if prev, dup := seen[it.text]; dup {
			l.c.addRule(it.line, ip, RuleSlack, "%s is already listed on line %d: list each once", it.text, prev)
			continue
		}
		seen[it.text] = it.line
		out = append(out, it.text)
	}
	return out
}

func (l *loader) boolField(m *fields, path, key string, dst *bool) {
	v := m.get(key)
	if v == nil {
		return
	}
	fp := path + "." + key
	n := deref(v)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		if b, err := strconv.ParseBool(n.Value); err == nil {
			*dst = b
			return
		}
		switch n.Value {
		case "True", "TRUE":
			*dst = true
			return
		case "False", "FALSE":
			*dst = false
			return
		}
	}
	l.c.add(n.Line, fp, "must be true or false, not %s", describe(n))
}

func (l *loader) intField(m *fields, path, key string, lo, hi int, dst *int) {
	l.text(m, path, key, "a whole number", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("invalid %s %q: give a whole number from %d to %d", key, s, lo, hi)
		}
		*dst = n
		return nil
	})
}
