package gateway

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clawrun/clawrun/chat"
)

// What Accept stored survives closing and reopening the file, and the ids
// it recorded still de-duplicate.
func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	s := openStore(t, dir)
	targets := []Target{{Agent: "a", Limit: 10}, {Agent: "b", Limit: 10}}
	for i := range 3 {
		if _, err := s.Accept(msg(i, "x"), targets, nil, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Done("a", msg(0, "").Message.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	pa, _ := s.Pending("a")
	pb, _ := s.Pending("b")
	if len(pa) != 2 || pa[0].Message.ID != msg(1, "").Message.ID || len(pb) != 3 {
		t.Fatalf("pending after reopen: a=%v b=%v", pa, pb)
	}
	acc, err := s.Accept(msg(0, "x"), targets, nil, now)
	if err != nil || !acc.Duplicate {
		t.Fatalf("redelivery of an answered message: %+v, %v", acc, err)
	}
}

// A second process cannot open a store in use.
func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	if _, err := OpenStore(dir + "/gateway.db"); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second open: %v, want ErrStoreLocked", err)
	}
}

// Old ids are pruned, except those of messages still waiting.
func TestStorePrune(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	old := time.Now().Add(-2 * SeenRetention)
	tg := []Target{{Agent: "a"}}
	if _, err := s.Accept(msg(1, "answered"), tg, nil, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(msg(2, "waiting"), tg, nil, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Done("a", msg(1, "").Message.ID); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(time.Now().Add(-SeenRetention))
	if err != nil {
		t.Fatal(err)
	}
	// Both delivery ids and the answered message's id go; the waiting
	// message's id stays.
	if n != 3 {
		t.Fatalf("pruned %d ids, want 3", n)
	}
	if acc, _ := s.Accept(msg(2, "waiting"), tg, nil, time.Now()); !acc.Duplicate {
		t.Fatal("a waiting message was accepted again after pruning")
	}
}

// crash abandons the store as kill -9 would: files closed, no checkpoint.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.log.close()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// dump is the store's content as text, for comparing states.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	s.mu.RLock()
	defer s.mu.RUnlock()
	var agents []string
	for name, q := range s.st.agents {
		if len(q.entries) > 0 {
			agents = append(agents, name)
		}
	}
	sort.Strings(agents)
	for _, name := range agents {
		for _, e := range s.st.agents[name].entries {
			fmt.Fprintf(&b, "queue %s %d %s %q attempts=%d\n", name, e.Seq, e.Entry.Message.ID, e.Entry.Message.Text, e.Entry.Attempts)
		}
	}
	for _, it := range s.st.outbox {
		fmt.Fprintf(&b, "outbox %d %q\n", it.Seq, it.Text)
	}
	var seen []string
	for k, v := range s.st.seen {
		seen = append(seen, fmt.Sprintf("seen %q %d", k, v))
	}
	sort.Strings(seen)
	b.WriteString(strings.Join(seen, "\n"))
	return b.String()
}

// someChanges makes one change of every kind.
func someChanges(t *testing.T, s *Store, base int) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	targets := []Target{{Agent: "a", Limit: 3, Full: Notice{Channel: "C1", Text: "a is full"}}, {Agent: "b"}}
	for i := range 4 {
		if _, err := s.Accept(msg(base+i, fmt.Sprint(base+i)), targets, nil, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddAttempt("a", []string{msg(base+1, "").Message.ID}, 5, func(at Attempt) *Notice {
		return &Notice{Channel: "C1", Text: "attempt " + at.Entry.Message.ID}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Done("b", msg(base, "").Message.ID, Notice{Channel: "C1", Text: "gave up"}); err != nil {
		t.Fatal(err)
	}
	items, err := s.Outbox()
	if err != nil || len(items) == 0 {
		t.Fatalf("outbox: %v, %v", items, err)
	}
	if err := s.NoticePosted(items[0].Seq); err != nil {
		t.Fatal(err)
	}
}

// Every change is in the log before its call returns: a crash right after
// loses nothing, with no checkpoint in between.
func TestStoreReplaysLog(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	someChanges(t, s, 0)
	want := dump(t, s)
	crash(t, s)
	s = openStore(t, dir)
	if got := dump(t, s); got != want {
		t.Fatalf("after replay:\n%s\nwant:\n%s", got, want)
	}
	// And again, with more changes on top of the replayed state.
	someChanges(t, s, 10)
	want = dump(t, s)
	crash(t, s)
	s = openStore(t, dir)
	defer s.Close()
	if got := dump(t, s); got != want {
		t.Fatalf("after second replay:\n%s\nwant:\n%s", got, want)
	}
}

// Delivery ids and message ids de-duplicate across a crash, whether the
// message is waiting or answered.
func TestStoreDedupSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	tg := []Target{{Agent: "a"}}
	now := time.Now()
	for i := range 2 {
		if _, err := s.Accept(msg(i, "x"), tg, nil, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Done("a", msg(0, "").Message.ID); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	s = openStore(t, dir)
	defer s.Close()
	for i := range 2 {
		sameDelivery := msg(i, "x")
		sameDelivery.Message.ID = "other:" + fmt.Sprint(i)
		sameMessage := msg(i, "x")
		sameMessage.DeliveryID = "EvOther" + fmt.Sprint(i)
		for _, in := range []chat.Inbound{msg(i, "x"), sameDelivery, sameMessage} {
			acc, err := s.Accept(in, tg, nil, now)
			if err != nil || !acc.Duplicate {
				t.Fatalf("message %d redelivered as %+v after a crash: %+v, %v", i, in, acc, err)
			}
		}
	}
	if p, _ := s.Pending("a"); len(p) != 1 || p[0].Message.ID != msg(1, "").Message.ID {
		t.Fatalf("pending after crash: %+v", p)
	}
}

// copyStore copies a crashed store's files to a new directory, the log
// cut to n bytes.
func copyStore(t *testing.T, from string, walData []byte) string {
	t.Helper()
	dir := t.TempDir()
	db, err := os.ReadFile(filepath.Join(from, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway.db"), db, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway.db-wal"), walData, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A crash in the middle of writing the last record leaves any prefix of
// it in the file (or garbage after it): the record is ignored, everything
// before it is kept, and the store carries on from there.
func TestStoreTornTail(t *testing.T) {
	for _, last := range []string{"accept", "done"} {
		t.Run(last, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			someChanges(t, s, 0)
			before := dump(t, s)
			start := s.log.size
			switch last {
			case "accept":
				_, err := s.Accept(msg(50, "the last one"), []Target{{Agent: "a"}}, nil, time.Unix(1_700_000_000, 0))
				if err != nil {
					t.Fatal(err)
				}
			case "done":
				if err := s.Done("a", msg(1, "").Message.ID); err != nil {
					t.Fatal(err)
				}
			}
			after := dump(t, s)
			crash(t, s)
			data, err := os.ReadFile(filepath.Join(dir, "gateway.db-wal"))
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) <= start {
				t.Fatalf("log of %d bytes, last record at %d", len(data), start)
			}
			check := func(name string, wal []byte, want string) {
				t.Helper()
				d := copyStore(t, dir, wal)
				s := openStore(t, d)
				if got := dump(t, s); got != want {
					t.Fatalf("%s: state\n%s\nwant\n%s", name, got, want)
				}
				// The store goes on from there, and a new record is not
				// lost behind the torn one.
				if _, err := s.Accept(msg(99, "after"), []Target{{Agent: "c"}}, nil, time.Now()); err != nil {
					t.Fatal(err)
				}
				crash(t, s)
				s = openStore(t, d)
				defer s.Close()
				if n, _ := s.QueueLen("c"); n != 1 {
					t.Fatalf("%s: a message accepted after recovery was lost", name)
				}
			}
			for cut := start; cut < int64(len(data)); cut++ {
				check(fmt.Sprintf("cut at %d of %d", cut, len(data)), data[:cut], before)
			}
			for i := start; i < int64(len(data)); i += 7 {
				bad := slices.Clone(data)
				bad[i] ^= 0x40
				check(fmt.Sprintf("byte %d flipped", i), bad, before)
			}
			check("whole", data, after)
			check("zeros after", append(slices.Clone(data), make([]byte, 100)...), after)
			check("garbage after", append(slices.Clone(data), []byte("\x00\x00\x01\x00garbage")...), after)
		})
	}
}

// A checkpoint stopped after any of its steps (as by a crash) leaves a
// store that opens with the same content and works on.
func TestStoreCheckpointCrashPoints(t *testing.T) {
	for _, step := range []string{"checkpointed", "log-written", "renamed"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			someChanges(t, s, 0)
			want := dump(t, s)
			s.crashAt = step
			if err := s.Close(); !errors.Is(err, errCrash) {
				t.Fatalf("close: %v, want the test crash", err)
			}
			s = openStore(t, dir)
			if got := dump(t, s); got != want {
				t.Fatalf("state\n%s\nwant\n%s", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "gateway.db-wal.tmp")); err == nil {
				t.Fatal("a stale new log was left behind")
			}
			someChanges(t, s, 10)
			want = dump(t, s)
			crash(t, s)
			s = openStore(t, dir)
			defer s.Close()
			if got := dump(t, s); got != want {
				t.Fatalf("after more changes: state\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// With a tiny log limit the store checkpoints every few changes while
// working; crashes in between lose nothing.
func TestStoreCheckpointsWhileWorking(t *testing.T) {
	dir := t.TempDir()
	var want string
	for round := range 5 {
		s := openStore(t, dir)
		if round > 0 {
			if got := dump(t, s); got != want {
				t.Fatalf("round %d: state\n%s\nwant\n%s", round, got, want)
			}
		}
		s.checkpointBytes = 600
		someChanges(t, s, 100*round)
		if n, err := s.Prune(time.Unix(1_700_000_001, 0)); err != nil || n == 0 {
			t.Fatalf("prune: %d, %v", n, err)
		}
		want = dump(t, s)
		crash(t, s)
	}
}

// A log whose records do not follow the checkpoint is damage: the store
// refuses to open rather than lose messages silently.
func TestStoreRefusesGap(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	start := s.log.size
	someChanges(t, s, 0)
	crash(t, s)
	data, err := os.ReadFile(filepath.Join(dir, "gateway.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(data[start:])
	gap := append(slices.Clone(data[:start]), data[start+recHeader+int64(n):]...)
	d := copyStore(t, dir, gap)
	if _, err := OpenStore(d + "/gateway.db"); err == nil || !strings.Contains(err.Error(), "records are missing") {
		t.Fatalf("open with a gap in the log: %v", err)
	}
}

// A store written by the bbolt-only version (no log, no meta bucket) opens
// with its content.
func TestStoreOpensBboltOnlyStore(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(dir+"/gateway.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := msg(7, "old")
	err = db.Update(func(tx *bolt.Tx) error {
		seen, _ := tx.CreateBucket(bucketSeen)
		seen.Put([]byte("m\x00"+m.Message.ID), seqKey(1_700_000_000))
		seen.Put([]byte("d\x00"+m.DeliveryID), seqKey(1_700_000_000))
		out, _ := tx.CreateBucket(bucketOutbox)
		out.SetSequence(3)
		out.Put(seqKey(3), []byte(`{"channel":"C1","thread":"t","text":"notice"}`))
		a, _ := tx.CreateBucket(bucketAgents)
		ag, _ := a.CreateBucket([]byte("a"))
		q, _ := ag.CreateBucket(bucketQueue)
		ids, _ := ag.CreateBucket(bucketIDs)
		q.SetSequence(5)
		e, _ := json.Marshal(Entry{Message: m.Message, DeliveryID: m.DeliveryID})
		q.Put(seqKey(5), e)
		return ids.Put([]byte(m.Message.ID), seqKey(5))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openStore(t, dir)
	defer s.Close()
	if p, _ := s.Pending("a"); len(p) != 1 || p[0].Message.Text != "old" {
		t.Fatalf("pending: %+v", p)
	}
	if o, _ := s.Outbox(); len(o) != 1 || o[0].Seq != 3 {
		t.Fatalf("outbox: %+v", o)
	}
	if acc, _ := s.Accept(m, []Target{{Agent: "a"}}, nil, time.Now()); !acc.Duplicate {
		t.Fatal("an old message was accepted again")
	}
	if _, err := s.Accept(msg(8, "new"), []Target{{Agent: "a"}}, []Notice{{Text: "n"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, s); !strings.Contains(got, "queue a 6 ") || !strings.Contains(got, "outbox 4 ") {
		t.Fatalf("sequences not continued:\n%s", got)
	}
}
