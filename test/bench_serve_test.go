package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakeslack"
)

// TestServeBench is `make bench`'s part for `clawrun serve` (scripts/bench.sh
// runs it; docs/benchmarks.md has the method and figures). It is skipped
// unless CLAWRUN_BENCH_SERVE=1, and writes its figures to stdout and, as
// JSON, to CLAWRUN_BENCH_OUT if set.
//
// Everything is real except Slack: the clawrun binary, the echo agent in its
// container, the bbolt store with its fsyncs, the product's slack-go client
// speaking Socket Mode and the Web API to the fake on loopback. Posts are
// not paced (CLAWRUN_SLACK_POST_INTERVAL=off), since pacing is Slack's rate
// limit, not clawrun's overhead.
//
// Latency is the time from the fake writing a message's envelope to its
// socket to the fake receiving the chat.postMessage of the reply, for one
// warm agent, one message at a time. Throughput is messages answered per
// second when a burst is sent to 1 and to 10 agents.
//
// Knobs: CLAWRUN_BENCH_MESSAGES (default 1000), CLAWRUN_BENCH_GAP between
// latency messages (default 5ms: each message finds an idle gateway, as
// chat traffic does; 0 sends the next as soon as the reply is in).
func TestServeBench(t *testing.T) {
	if os.Getenv("CLAWRUN_BENCH_SERVE") != "1" {
		t.Skip("benchmark: set CLAWRUN_BENCH_SERVE=1 (make bench)")
	}
	n := 1000
	if v := os.Getenv("CLAWRUN_BENCH_MESSAGES"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 10 {
			t.Fatalf("CLAWRUN_BENCH_MESSAGES=%q: want a number >= 10", v)
		}
	}
	gap := 5 * time.Millisecond
	if v := os.Getenv("CLAWRUN_BENCH_GAP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CLAWRUN_BENCH_GAP=%q: %v", v, err)
		}
		gap = d
	}
	mode := "rootless"
	if isRoot() {
		mode = "root"
	}
	res := benchResults{Mode: mode, Messages: n, GapMS: ms(gap)}

	res.Agent = benchAgentAlone(t, n)
	res.Latency = benchLatency(t, n, gap, "", []string{"/agent"})
	res.LatencyStatus = benchLatency(t, n, gap, "", []string{"/agent", "-status"})
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		// Not a configuration to run: it shows what the store's fsyncs
		// cost, by putting --data on tmpfs where fsync returns at once.
		shm, err := os.MkdirTemp("/dev/shm", "clawrun-bench-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(shm) })
			lat := benchLatency(t, n, gap, shm, []string{"/agent"})
			res.LatencyTmpfs = &lat
		}
	}
	res.Throughput1 = benchThroughput(t, n, 1)
	res.Throughput10 = benchThroughput(t, n, 10)

	fmt.Print(res.String())
	if out := os.Getenv("CLAWRUN_BENCH_OUT"); out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type latencyStats struct {
	N                             int
	P50, P90, P99, Max, Mean, Min float64 // ms
	Config                        string  `json:",omitempty"`
	Data                          string  `json:",omitempty"`
	// Acked is the part from the envelope to its ack: the message read
	// from the socket, routed and committed to the store.
	Acked *latencyStats `json:",omitempty"`
}

type throughputStats struct {
	Agents, Messages int
	Seconds          float64
	PerSecond        float64
	P50, P99         float64 // ms, each message from send to its reply, under the burst
}

type benchResults struct {
	Mode          string
	Messages      int
	GapMS         float64
	Agent         latencyStats // the echo agent alone, over pipes
	Latency       latencyStats
	LatencyStatus latencyStats
	LatencyTmpfs  *latencyStats `json:",omitempty"`
	Throughput1   throughputStats
	Throughput10  throughputStats
}

func (r benchResults) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "=== clawrun serve, %s: message → reply over the fake Slack on loopback, times in ms\n", r.Mode)
	fmt.Fprintf(&b, "%-44s %6s %7s %7s %7s %7s %7s\n", "case", "n", "p50", "p90", "p99", "max", "mean")
	row := func(name string, s latencyStats) {
		fmt.Fprintf(&b, "%-44s %6d %7.2f %7.2f %7.2f %7.2f %7.2f\n", name, s.N, s.P50, s.P90, s.P99, s.Max, s.Mean)
	}
	row("echo agent alone (pipes, no container)", r.Agent)
	row(fmt.Sprintf("serve, warm echo agent, 1 at a time (+%gms)", r.GapMS), r.Latency)
	row("  envelope → ack (read, routed, stored)", *r.Latency.Acked)
	row("  same, agent sends status (:eyes: add/rm)", r.LatencyStatus)
	if r.LatencyTmpfs != nil {
		row("  same, --data on tmpfs (fsync ~free)", *r.LatencyTmpfs)
		row("  envelope → ack (read, routed, stored)", *r.LatencyTmpfs.Acked)
	}
	fmt.Fprintf(&b, "%-44s %6s %9s %7s %7s\n", "burst of messages, spread over the agents", "n", "msg/s", "p50", "p99")
	for _, s := range []throughputStats{r.Throughput1, r.Throughput10} {
		fmt.Fprintf(&b, "%-44s %6d %9.0f %7.1f %7.1f\n", fmt.Sprintf("%d agent(s), one message at a time each", s.Agents), s.Messages, s.PerSecond, s.P50, s.P99)
	}
	b.WriteString("target (issue 5): serve p50 < 2 ms, p99 < 10 ms\n")
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func stats(samples []time.Duration) latencyStats {
	s := slices.Clone(samples)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latencyStats{N: len(s), P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: ms(s[len(s)-1]),
		Min: ms(s[0]), Mean: ms(sum / time.Duration(len(s)))}
}

// benchAgentAlone times the echo agent's own work: one message written to
// its stdin, its reply read back, over pipes, no container and no gateway.
func benchAgentAlone(t *testing.T, n int) latencyStats {
	c := exec.Command(agentBin)
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	defer in.Close()
	r := bufio.NewReader(out)
	var samples []time.Duration
	for i := range n + 50 {
		line := fmt.Sprintf(`{"id":"m%d","channel":"C0BENCH","thread":"","user":"U0ALICE","text":"bench %d","ts":"1700000000.%06d"}`+"\n", i, i, i)
		start := time.Now()
		if _, err := io.WriteString(in, line); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if i >= 50 {
			samples = append(samples, time.Since(start))
		}
	}
	return stats(samples)
}

func benchFile(e *env, agents int, command []string) {
	cmd, _ := json.Marshal(command)
	var b strings.Builder
	b.WriteString("agents:\n")
	for i := range agents {
		fmt.Fprintf(&b, "  echo%d:\n    rootfs: %s\n    command: %s\n    slack:\n      channels: [C0BENCH%d]\n      queue_limit: 100000\n",
			i, baseRootfs, cmd, i)
	}
	e.writeFile("clawrun.yaml", b.String())
}

// benchLatency sends n messages to one warm agent, one at a time, gap
// apart, after 50 unmeasured ones.
func benchLatency(t *testing.T, n int, gap time.Duration, data string, command []string) latencyStats {
	fs := fakeslack.New(fakeslack.Options{PingInterval: time.Minute})
	defer fs.Close()
	e := newEnv(t)
	if data != "" {
		e.data = filepath.Join(data, "data")
	}
	benchFile(e, 1, command)
	p := startServeWith(t, e, fs, 1, serveOpts{env: []string{"CLAWRUN_SLACK_POST_INTERVAL=off"}})
	defer p.stop(t)
	var samples, acks []time.Duration
	const warmup = 50
	for i := range n + warmup {
		ts := fs.NextTS()
		env := fs.Send(fakeslack.Message("C0BENCH0", "channel", "U0ALICE", fmt.Sprintf("bench %d", i), ts))
		posts, err := fs.WaitPosts(i+1, 30*time.Second)
		if err != nil {
			t.Fatalf("message %d: %v\nserve stderr:\n%s", i, err, p.stderr.String())
		}
		last := posts[i]
		if last.ThreadTS != ts {
			t.Fatalf("message %d: reply %+v is not in thread %s", i, last, ts)
		}
		// The reply can be posted before the ack reaches the fake: the
		// agent gets the message as soon as it is stored.
		if err := fs.WaitAck(env, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if i >= warmup {
			samples = append(samples, last.At.Sub(fs.SentAt(env)))
			acks = append(acks, fs.AckedAt(env).Sub(fs.SentAt(env)))
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	s := stats(samples)
	s.Config = strings.Join(command, " ")
	s.Data = data
	a := stats(acks)
	s.Acked = &a
	return s
}

// benchThroughput sends n messages at once, spread round-robin over the
// agents' channels, and times until every reply is in.
func benchThroughput(t *testing.T, n, agents int) throughputStats {
	fs := fakeslack.New(fakeslack.Options{PingInterval: time.Minute})
	defer fs.Close()
	e := newEnv(t)
	benchFile(e, agents, []string{"/agent"})
	p := startServeWith(t, e, fs, 1, serveOpts{agents: agents, env: []string{"CLAWRUN_SLACK_POST_INTERVAL=off"}})
	defer p.stop(t)
	// Warm every agent up.
	for i := range agents {
		fs.Send(fakeslack.Message(fmt.Sprintf("C0BENCH%d", i), "channel", "U0ALICE", "warm", fs.NextTS()))
	}
	if _, err := fs.WaitPosts(agents, 30*time.Second); err != nil {
		t.Fatalf("%v\nserve stderr:\n%s", err, p.stderr.String())
	}
	sent := map[string]time.Time{} // thread ts → envelope sent
	envs := make([]string, 0, n)
	tss := make([]string, 0, n)
	start := time.Now()
	for i := range n {
		ts := fs.NextTS()
		envs = append(envs, fs.Send(fakeslack.Message(fmt.Sprintf("C0BENCH%d", i%agents), "channel", "U0ALICE", fmt.Sprintf("burst %d", i), ts)))
		tss = append(tss, ts)
	}
	posts, err := fs.WaitPosts(agents+n, 120*time.Second)
	if err != nil {
		t.Fatalf("%v\nserve stderr:\n%s", err, p.stderr.String())
	}
	var end time.Time
	for i, env := range envs {
		sent[tss[i]] = fs.SentAt(env)
	}
	var samples []time.Duration
	for _, post := range posts[agents:] {
		if st, ok := sent[post.ThreadTS]; ok {
			samples = append(samples, post.At.Sub(st))
			if post.At.After(end) {
				end = post.At
			}
		}
	}
	if len(samples) != n {
		t.Fatalf("%d replies to %d messages", len(samples), n)
	}
	secs := end.Sub(start).Seconds()
	s := stats(samples)
	return throughputStats{Agents: agents, Messages: n, Seconds: secs, PerSecond: float64(n) / secs, P50: s.P50, P99: s.P99}
}
