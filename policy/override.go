package policy

// WithCommand returns a copy of the plan running args instead of the file's
// command (`clawrun run AGENT -- CMD...`); every grant and limit stays.
func (p *Plan) WithCommand(args []string) *Plan {
	c := *p
	c.Command = append([]string(nil), args...)
	c.set.command = c.Image != ""
	return &c
}
