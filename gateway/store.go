package gateway

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/clawrun/clawrun/chat"
)

// The store keeps its state in memory and makes every change durable with
// one append to a write-ahead log, DATA/gateway.db-wal, and one fdatasync:
// half the syncs of a bbolt commit, on the path of every message before
// the transport acks it. The log is folded now and then into a checkpoint,
// the bbolt file DATA/gateway.db (store_wal.go has the log, the
// checkpoint and the argument why a crash at any point loses nothing).
// The checkpoint's layout:
//
//	seen/                  "d\x00"+DeliveryID, "m\x00"+message id → unix seconds first seen
//	outbox/                seq → Notice (gateway's own replies, posted at least once)
//	agents/NAME/queue/     seq → Entry, in arrival order
//	agents/NAME/ids/       message id → seq
//	meta/lsn               the last log record the checkpoint contains
//	meta/id                the store's identity (StoreID), made on first open
var (
	bucketSeen   = []byte("seen")
	bucketOutbox = []byte("outbox")
	bucketAgents = []byte("agents")
	bucketQueue  = []byte("queue")
	bucketIDs    = []byte("ids")
	bucketMeta   = []byte("meta")
	keyLSN       = []byte("lsn")
	keyStoreID   = []byte("id")
)

// ErrStoreLocked means another process (another clawrun serve with the same
// --data) holds the store.
var ErrStoreLocked = errors.New("message store is in use by another process")

// errStoreClosed is returned by every call after Close.
var errStoreClosed = errors.New("message store is closed")

// Store is the gateway's durable queue. It is safe for concurrent use.
type Store struct {
	path string

	// wmu serializes changes: a change is decided, logged, synced and
	// applied under it, so the state it was decided on cannot move.
	wmu sync.Mutex
	db  *bolt.DB // the checkpoint; its flock keeps other processes out
	log *wal
	// failed is set when a log write or sync failed: what the file holds
	// is then unknown, so no further change is accepted (fail-stop; a
	// restart replays what is valid).
	failed error
	// checkpointBytes is the log size after which the next change first
	// folds the log into the checkpoint.
	checkpointBytes int64
	// crashAt, in tests, stops a checkpoint after the named step as a
	// crash would.
	crashAt string

	// mu guards st. Readers take it shared and never wait for a sync;
	// a change takes it only to apply itself once durable.
	mu     sync.RWMutex
	st     *state
	closed bool
}

// Entry is one message waiting for one agent's reply.
type Entry struct {
	Message    chat.Message `json:"message"`
	DeliveryID string       `json:"delivery_id,omitempty"`
	Received   time.Time    `json:"received"`
	// Attempts counts deliveries that ended with the agent exiting before
	// it answered; a message that keeps crashing its agent is given up.
	Attempts int `json:"attempts,omitempty"`
}

// Notice is a reply of the gateway itself (not of an agent): a refusal, a
// full queue, an agent that is down.
type Notice struct {
	Channel string `json:"channel"`
	Thread  string `json:"thread"`
	Text    string `json:"text"`
	// Since is the ts of the message the notice answers: after a
	// restart, the lookup for a notice that may have gone out already
	// (KeyedTransport.Posted) reads the conversation from there.
	Since string `json:"since,omitempty"`
}

// OutboxItem is a stored notice with its key.
type OutboxItem struct {
	Seq uint64 `json:"seq"`
	Notice
}

// Target is one agent a message is routed to.
type Target struct {
	Agent string
	Limit int // pending messages the agent may have; 0 = unbounded
	// Full is posted instead of queueing when the agent has Limit pending.
	Full Notice
	// Note, when set, is posted as well when the message is queued (e.g.
	// the agent is down and the sender should know the answer will wait).
	Note *Notice
}

// Accepted says what Accept did with a message.
type Accepted struct {
	Duplicate bool     // seen before (same delivery or message id): nothing done
	Queued    []string // agents the message was queued for
	Full      []string // agents whose queue was full
}

// defaultCheckpointBytes bounds the log: at about 1 KiB per answered
// message, a checkpoint every few thousand messages.
const defaultCheckpointBytes = 4 << 20

// OpenStore opens (creating) the store at path (the checkpoint; the log is
// path+"-wal"). It fails fast with ErrStoreLocked rather than waiting when
// another process has it open. Opening replays the log and folds it into a
// fresh checkpoint.
func OpenStore(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("message store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w: is another 'clawrun serve' running with the same --data?", path, ErrStoreLocked)
		}
		return nil, fmt.Errorf("open message store %s: %w", path, err)
	}
	s := &Store{path: path, db: db, checkpointBytes: defaultCheckpointBytes}
	if err := s.replay(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open message store %s: %w", path, err)
	}
	return s, nil
}

// Close folds the log into the checkpoint and closes the store. If that
// fails the log stays and is replayed on the next open.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var err error
	if s.failed == nil {
		err = s.checkpoint()
	}
	if s.log != nil {
		err = errors.Join(err, s.log.close())
	}
	return errors.Join(err, s.db.Close())
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// ID identifies this store among all stores, for good: it is made at
// random when the store is first opened and kept in the checkpoint. Keys
// of posts (KeyedTransport) include it, so that an outbox seq, which
// starts at 1 in every store, never names another store's notice.
func (s *Store) ID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.id
}

// state is the store's content. Only apply changes it.
type state struct {
	id     string            // the store's identity (ID); set on open, never changed
	seen   map[string]uint64 // seen key → unix seconds first seen
	outbox []OutboxItem      // by Seq
	outSeq uint64            // last outbox seq handed out
	agents map[string]*agentQueue
}

type agentQueue struct {
	seq     uint64   // last seq handed out
	entries []queued // by Seq
	ids     map[string]uint64
}

func newState() *state {
	return &state{seen: map[string]uint64{}, agents: map[string]*agentQueue{}}
}

func (st *state) queue(agent string) *agentQueue {
	q := st.agents[agent]
	if q == nil {
		q = &agentQueue{ids: map[string]uint64{}}
		st.agents[agent] = q
	}
	return q
}

func (q *agentQueue) index(seq uint64) (int, bool) {
	i := sort.Search(len(q.entries), func(i int) bool { return q.entries[i].Seq >= seq })
	return i, i < len(q.entries) && q.entries[i].Seq == seq
}

// change is one log record: the effects of one call, decided before it is
// logged, so that replay does exactly what the call did.
type change struct {
	Seen     []string     `json:"seen,omitempty"` // keys first seen at Stamp
	Stamp    uint64       `json:"stamp,omitempty"`
	Queued   []queued     `json:"queued,omitempty"`
	Notices  []OutboxItem `json:"notices,omitempty"`
	Done     []doneRef    `json:"done,omitempty"`
	Attempts []attempts   `json:"attempts,omitempty"`
	Posted   []uint64     `json:"posted,omitempty"` // outbox seqs
	Forget   []string     `json:"forget,omitempty"` // seen keys
}

type queued struct {
	Agent string `json:"agent"`
	Seq   uint64 `json:"seq"`
	Entry Entry  `json:"entry"`
}

type doneRef struct {
	Agent string `json:"agent"`
	ID    string `json:"id"`
}

type attempts struct {
	Agent string `json:"agent"`
	ID    string `json:"id"`
	N     int    `json:"n"`
}

func (c *change) empty() bool {
	return len(c.Seen) == 0 && len(c.Queued) == 0 && len(c.Notices) == 0 && len(c.Done) == 0 &&
		len(c.Attempts) == 0 && len(c.Posted) == 0 && len(c.Forget) == 0
}

// apply makes the change to the state. It is the one place that changes
// a state, for live calls and replay alike.
func (st *state) apply(c *change) {
	for _, k := range c.Seen {
		st.seen[k] = c.Stamp
	}
	for _, qd := range c.Queued {
		q := st.queue(qd.Agent)
		i, _ := q.index(qd.Seq)
		q.entries = slices.Insert(q.entries, i, qd)
		q.ids[qd.Entry.Message.ID] = qd.Seq
		q.seq = max(q.seq, qd.Seq)
	}
	for _, n := range c.Notices {
		i := sort.Search(len(st.outbox), func(i int) bool { return st.outbox[i].Seq >= n.Seq })
		st.outbox = slices.Insert(st.outbox, i, n)
		st.outSeq = max(st.outSeq, n.Seq)
	}
	for _, d := range c.Done {
		q := st.agents[d.Agent]
		if q == nil {
			continue
		}
		if seq, ok := q.ids[d.ID]; ok {
			if i, ok := q.index(seq); ok {
				q.entries = slices.Delete(q.entries, i, i+1)
			}
			delete(q.ids, d.ID)
		}
	}
	for _, a := range c.Attempts {
		q := st.agents[a.Agent]
		if q == nil {
			continue
		}
		if i, ok := q.index(q.ids[a.ID]); ok && q.entries[i].Entry.Message.ID == a.ID {
			q.entries[i].Entry.Attempts = a.N
		}
	}
	for _, seq := range c.Posted {
		i := sort.Search(len(st.outbox), func(i int) bool { return st.outbox[i].Seq >= seq })
		if i < len(st.outbox) && st.outbox[i].Seq == seq {
			st.outbox = slices.Delete(st.outbox, i, i+1)
		}
	}
	for _, k := range c.Forget {
		delete(st.seen, k)
	}
}

// commit logs the change, syncs the log and then applies the change. The
// caller holds wmu. Nothing is applied unless the record is durable.
func (s *Store) commit(c *change) error {
	if c.empty() {
		return nil
	}
	if s.log.size >= s.checkpointBytes {
		// A failed checkpoint leaves a log that is still valid to append
		// to, unless it set failed.
		if err := s.checkpoint(); err != nil && s.failed != nil {
			return s.failed
		}
	}
	if err := s.log.append(c); err != nil {
		s.failed = fmt.Errorf("write-ahead log %s: %w (restart clawrun serve)", s.log.path, err)
		return s.failed
	}
	s.mu.Lock()
	s.st.apply(c)
	s.mu.Unlock()
	return nil
}

// change runs decide on the current state and commits what it returns.
func (s *Store) change(decide func(st *state) (*change, error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	if s.failed != nil {
		return s.failed
	}
	// Only changes (under wmu) write st: reading it here needs no mu.
	c, err := decide(s.st)
	if err != nil || c == nil {
		return err
	}
	return s.commit(c)
}

func seenKeys(in chat.Inbound) []string {
	var keys []string
	if in.DeliveryID != "" {
		keys = append(keys, "d\x00"+in.DeliveryID)
	}
	if in.Message.ID != "" {
		keys = append(keys, "m\x00"+in.Message.ID)
	}
	return keys
}

// Accept durably records an inbound message as one log record: its
// delivery and message ids for de-duplication, an entry in the queue of
// every target with room, and the notices (plus a Full notice per target
// without room). A message seen before changes nothing.
func (s *Store) Accept(in chat.Inbound, targets []Target, notices []Notice, now time.Time) (Accepted, error) {
	var acc Accepted
	err := s.change(func(st *state) (*change, error) {
		keys := seenKeys(in)
		for _, k := range keys {
			if _, ok := st.seen[k]; ok {
				acc.Duplicate = true
				return nil, nil
			}
		}
		c := &change{Seen: keys, Stamp: uint64(now.Unix())}
		all := slices.Clone(notices)
		entry := Entry{Message: in.Message, DeliveryID: in.DeliveryID, Received: now.UTC()}
		added := map[string]uint64{} // entries this change adds per agent
		for _, t := range targets {
			n, seq := 0, uint64(0)
			if q := st.agents[t.Agent]; q != nil {
				n, seq = len(q.entries), q.seq
			}
			if t.Limit > 0 && n+int(added[t.Agent]) >= t.Limit {
				acc.Full = append(acc.Full, t.Agent)
				all = append(all, t.Full)
				continue
			}
			added[t.Agent]++
			c.Queued = append(c.Queued, queued{Agent: t.Agent, Seq: seq + added[t.Agent], Entry: entry})
			acc.Queued = append(acc.Queued, t.Agent)
			if t.Note != nil {
				all = append(all, *t.Note)
			}
		}
		c.Notices = outboxItems(st, all)
		return c, nil
	})
	if err != nil {
		return Accepted{}, fmt.Errorf("store message %s: %w", in.Message.ID, err)
	}
	return acc, nil
}

func outboxItems(st *state, notices []Notice) []OutboxItem {
	var out []OutboxItem
	for i, n := range notices {
		out = append(out, OutboxItem{Seq: st.outSeq + uint64(i) + 1, Notice: n})
	}
	return out
}

// read runs f on the state, shared with other readers.
func (s *Store) read(f func(st *state)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errStoreClosed
	}
	f(s.st)
	return nil
}

// Pending returns the agent's unanswered messages in arrival order.
func (s *Store) Pending(agent string) ([]Entry, error) {
	var out []Entry
	err := s.read(func(st *state) {
		if q := st.agents[agent]; q != nil {
			for _, e := range q.entries {
				out = append(out, e.Entry)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read queue of agent %s: %w", agent, err)
	}
	return out, nil
}

// QueueLen is the number of the agent's unanswered messages.
func (s *Store) QueueLen(agent string) (int, error) {
	n := 0
	err := s.read(func(st *state) {
		if q := st.agents[agent]; q != nil {
			n = len(q.entries)
		}
	})
	return n, err
}

// Done removes an answered message from the agent's queue. Called right
// after the reply was posted, it is the record that the reply went out:
// from then on the message is never delivered to the agent again. With
// notices, the removal and the notices are one record (used to give up on
// a message and say so).
func (s *Store) Done(agent, id string, notices ...Notice) error {
	err := s.change(func(st *state) (*change, error) {
		c := &change{Notices: outboxItems(st, notices)}
		if q := st.agents[agent]; q != nil {
			if _, ok := q.ids[id]; ok {
				c.Done = []doneRef{{Agent: agent, ID: id}}
			}
		}
		return c, nil
	})
	if err != nil {
		return fmt.Errorf("mark message %s answered by agent %s: %w", id, agent, err)
	}
	return nil
}

// Attempt is a delivery that ended with the agent exiting before it
// answered.
type Attempt struct {
	// Entry is the message, its Attempts counting this delivery.
	Entry Entry
	// GaveUp: the message reached the limit of attempts and was removed
	// from the queue.
	GaveUp bool
}

// AddAttempt records that the agent ended while the messages ids were in
// flight: one more attempt for each, the removal of those that reached
// maxAttempts (given up), and the notice that note returns for each (nil
// for none). It is one log record, so that a restart neither repeats a
// notice nor loses one: an attempt is counted with its notice queued, or
// neither is.
func (s *Store) AddAttempt(agent string, ids []string, maxAttempts int, note func(Attempt) *Notice) ([]Attempt, error) {
	var out []Attempt
	err := s.change(func(st *state) (*change, error) {
		out = nil
		q := st.agents[agent]
		if q == nil {
			return nil, nil
		}
		c := &change{}
		var notices []Notice
		for _, id := range ids {
			seq, ok := q.ids[id]
			if !ok {
				continue
			}
			i, ok := q.index(seq)
			if !ok {
				continue
			}
			at := Attempt{Entry: q.entries[i].Entry}
			at.Entry.Attempts++
			at.GaveUp = at.Entry.Attempts >= maxAttempts
			if at.GaveUp {
				c.Done = append(c.Done, doneRef{Agent: agent, ID: id})
			} else {
				c.Attempts = append(c.Attempts, attempts{Agent: agent, ID: id, N: at.Entry.Attempts})
			}
			if note != nil {
				if n := note(at); n != nil {
					notices = append(notices, *n)
				}
			}
			out = append(out, at)
		}
		c.Notices = outboxItems(st, notices)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("count delivery attempts of agent %s: %w", agent, err)
	}
	return out, nil
}

// Outbox returns the notices not yet posted, oldest first.
func (s *Store) Outbox() ([]OutboxItem, error) {
	var out []OutboxItem
	err := s.read(func(st *state) { out = slices.Clone(st.outbox) })
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// NoticePosted removes a posted notice from the outbox.
func (s *Store) NoticePosted(seq uint64) error {
	err := s.change(func(*state) (*change, error) {
		return &change{Posted: []uint64{seq}}, nil
	})
	if err != nil {
		return fmt.Errorf("record notice %d posted: %w", seq, err)
	}
	return nil
}

// Prune forgets delivery and message ids first seen before cutoff, except
// those of messages still waiting: a platform's redeliveries come within
// minutes or hours, so the ids need not be kept forever.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := s.change(func(st *state) (*change, error) {
		pending := map[string]bool{}
		for _, q := range st.agents {
			for id := range q.ids {
				pending["m\x00"+id] = true
			}
		}
		limit := uint64(cutoff.Unix())
		c := &change{}
		for k, stamp := range st.seen {
			if stamp < limit && !pending[k] {
				c.Forget = append(c.Forget, k)
			}
		}
		sort.Strings(c.Forget)
		n = len(c.Forget)
		return c, nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune seen ids: %w", err)
	}
	return n, nil
}
