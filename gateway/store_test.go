package gateway

import (
	"errors"
	"testing"
	"time"
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
