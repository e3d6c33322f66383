package main

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawrun/clawrun/policy"
	"github.com/clawrun/clawrun/rootfs"
	"github.com/clawrun/clawrun/runtime"
)

//go:embed demo.yaml
var demoAgentFile []byte

// demoMessages is the scripted conversation: chat messages in the agent
// protocol's shape, as the Slack gateway will deliver them.
var demoMessages = []string{"hello", "whoami", "ls /", "ls /data"}

func newDemoCmd(g *globals) *cobra.Command {
	var agentBin, busybox string
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the embedded demo agent rootless and show a short conversation (no Slack needed)",
		Long: `Build a tiny root filesystem (static busybox + the example echo agent), run
the embedded demo agent in a rootless container with the secure defaults, feed
it a few chat messages over the agent protocol and print the replies.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.OutOrStdout(), g, agentBin, busybox, keep)
		},
	}
	cmd.Flags().StringVar(&agentBin, "agent-binary", "", "static agent binary (default: echo-agent next to clawrun)")
	cmd.Flags().StringVar(&busybox, "busybox", "/bin/busybox", "static busybox (Debian: busybox-static)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo directory (rootfs and agent file)")
	return cmd
}

func runDemo(out io.Writer, g *globals, agentBin, busybox string, keep bool) error {
	if agentBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		agentBin = filepath.Join(filepath.Dir(exe), "echo-agent")
	}
	if _, err := os.Stat(agentBin); err != nil {
		return fmt.Errorf("demo agent %s: %w (build it with 'make build' or pass --agent-binary)", agentBin, err)
	}
	dir, err := os.MkdirTemp("", "clawrun-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "demo directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "» building a tiny rootfs (%s + %s)\n", busybox, filepath.Base(agentBin))
	if err := rootfs.BuildBusybox(filepath.Join(dir, "rootfs"), busybox, map[string]string{"/agent": agentBin}); err != nil {
		return fmt.Errorf("demo rootfs: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "shared"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "shared", "README"), []byte("this file was granted read-only\n"), 0o644); err != nil {
		return err
	}
	file := filepath.Join(dir, "clawrun.yaml")
	if err := os.WriteFile(file, demoAgentFile, 0o644); err != nil {
		return err
	}
	af, err := policy.Load(file)
	if err != nil {
		return err
	}
	plan, err := af.Agent("demo")
	if err != nil {
		return err
	}
	rt, err := g.runtime()
	if err != nil {
		return err
	}
	mode := "rootless"
	if !rt.Host.Rootless() {
		mode = "as root (run it as a normal user to see rootless)"
	}
	fmt.Fprintf(out, "» running agent %q %s: new user/pid/mount/net namespaces, no capabilities, seccomp, read-only root\n", plan.Name, mode)

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := rt.Run(plan, runtime.RunOptions{
			Name: "demo-" + randomSuffix(), Remove: true, Stdin: inR, Stdout: outW, Stderr: os.Stderr,
		})
		// Unblock the conversation if the agent is gone early.
		inR.Close()
		outW.Close()
		done <- result{code, err}
	}()
	replies := bufio.NewScanner(outR)
	replies.Buffer(make([]byte, 64*1024), 1<<20)
	for i, text := range demoMessages {
		msg := map[string]string{
			"id": fmt.Sprintf("m%d", i+1), "channel": "D0DEMO", "thread": "", "user": "U0ALICE",
			"text": text, "ts": fmt.Sprintf("%d.%06d", time.Now().Unix(), i),
		}
		b, _ := json.Marshal(msg)
		fmt.Fprintf(out, "  alice › %s\n", text)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			break
		}
		if !readReply(out, replies, msg["id"]) {
			break
		}
	}
	inW.Close()
	_, _ = io.Copy(io.Discard, outR)
	r := <-done
	if r.err != nil {
		return r.err
	}
	fmt.Fprintf(out, "» agent exited with code %d; container removed, nothing left behind\n", r.code)
	if r.code != 0 {
		return &exitError{r.code, nil}
	}
	return nil
}

// readReply prints protocol lines until the final reply to id arrives.
func readReply(out io.Writer, sc *bufio.Scanner, id string) bool {
	for sc.Scan() {
		var rep struct {
			ReplyTo string `json:"reply_to"`
			Text    string `json:"text"`
			Status  string `json:"status"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			fmt.Fprintf(out, "  (agent wrote a non-protocol line: %s)\n", sc.Text())
			continue
		}
		if rep.Status != "" {
			fmt.Fprintf(out, "  demo  · %s\n", rep.Status)
			continue
		}
		fmt.Fprintf(out, "  demo  › %s\n", rep.Text)
		if rep.ReplyTo == id {
			return true
		}
	}
	return false
}
