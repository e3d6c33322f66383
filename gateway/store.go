package gateway

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/clawrun/clawrun/chat"
)

// The store is one bbolt file (DATA/gateway.db). Its layout:
//
//	seen/                  "d\x00"+DeliveryID, "m\x00"+message id → unix seconds first seen
//	outbox/                seq → Notice (gateway's own replies, posted at least once)
//	agents/NAME/queue/     seq → Entry, in arrival order
//	agents/NAME/ids/       message id → seq
//
// Every change is one transaction, and bbolt syncs the file before a
// transaction's commit returns: what Accept reported stored survives a
// kill -9 or a power cut.
var (
	bucketSeen   = []byte("seen")
	bucketOutbox = []byte("outbox")
	bucketAgents = []byte("agents")
	bucketQueue  = []byte("queue")
	bucketIDs    = []byte("ids")
)

// ErrStoreLocked means another process (another clawrun serve with the same
// --data) holds the store.
var ErrStoreLocked = errors.New("message store is in use by another process")

// Store is the gateway's durable queue.
type Store struct {
	db   *bolt.DB
	path string
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
}

// OutboxItem is a stored notice with its key.
type OutboxItem struct {
	Seq uint64
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

// OpenStore opens (creating) the store at path. It fails fast with
// ErrStoreLocked rather than waiting when another process has it open.
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
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSeen, bucketOutbox, bucketAgents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init message store %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Path is the store's file.
func (s *Store) Path() string { return s.path }

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

func seenKeys(in chat.Inbound) [][]byte {
	var keys [][]byte
	if in.DeliveryID != "" {
		keys = append(keys, []byte("d\x00"+in.DeliveryID))
	}
	if in.Message.ID != "" {
		keys = append(keys, []byte("m\x00"+in.Message.ID))
	}
	return keys
}

// agentBuckets returns (creating when writable) the agent's queue and ids.
func agentBuckets(tx *bolt.Tx, agent string) (queue, ids *bolt.Bucket, err error) {
	root := tx.Bucket(bucketAgents)
	if !tx.Writable() {
		a := root.Bucket([]byte(agent))
		if a == nil {
			return nil, nil, nil
		}
		return a.Bucket(bucketQueue), a.Bucket(bucketIDs), nil
	}
	a, err := root.CreateBucketIfNotExists([]byte(agent))
	if err != nil {
		return nil, nil, err
	}
	if queue, err = a.CreateBucketIfNotExists(bucketQueue); err != nil {
		return nil, nil, err
	}
	if ids, err = a.CreateBucketIfNotExists(bucketIDs); err != nil {
		return nil, nil, err
	}
	return queue, ids, nil
}

// Accept durably records an inbound message in one transaction: its
// delivery and message ids for de-duplication, an entry in the queue of
// every target with room, and the notices (plus a Full notice per target
// without room). A message seen before changes nothing.
func (s *Store) Accept(in chat.Inbound, targets []Target, notices []Notice, now time.Time) (Accepted, error) {
	var acc Accepted
	err := s.db.Update(func(tx *bolt.Tx) error {
		acc = Accepted{}
		all := slices.Clone(notices)
		seen := tx.Bucket(bucketSeen)
		keys := seenKeys(in)
		for _, k := range keys {
			if seen.Get(k) != nil {
				acc.Duplicate = true
				return nil
			}
		}
		stamp := seqKey(uint64(now.Unix()))
		for _, k := range keys {
			if err := seen.Put(k, stamp); err != nil {
				return err
			}
		}
		entry, err := json.Marshal(Entry{Message: in.Message, DeliveryID: in.DeliveryID, Received: now.UTC()})
		if err != nil {
			return err
		}
		for _, t := range targets {
			queue, ids, err := agentBuckets(tx, t.Agent)
			if err != nil {
				return err
			}
			if t.Limit > 0 && countKeys(queue) >= t.Limit {
				acc.Full = append(acc.Full, t.Agent)
				all = append(all, t.Full)
				continue
			}
			n, err := queue.NextSequence()
			if err != nil {
				return err
			}
			if err := queue.Put(seqKey(n), entry); err != nil {
				return err
			}
			if err := ids.Put([]byte(in.Message.ID), seqKey(n)); err != nil {
				return err
			}
			acc.Queued = append(acc.Queued, t.Agent)
			if t.Note != nil {
				all = append(all, *t.Note)
			}
		}
		return putNotices(tx, all)
	})
	if err != nil {
		return Accepted{}, fmt.Errorf("store message %s: %w", in.Message.ID, err)
	}
	return acc, nil
}

// countKeys counts through a cursor, which (unlike Bucket.Stats) sees the
// writes of the current transaction.
func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func putNotices(tx *bolt.Tx, notices []Notice) error {
	out := tx.Bucket(bucketOutbox)
	for _, n := range notices {
		b, err := json.Marshal(n)
		if err != nil {
			return err
		}
		seq, err := out.NextSequence()
		if err != nil {
			return err
		}
		if err := out.Put(seqKey(seq), b); err != nil {
			return err
		}
	}
	return nil
}

// Pending returns the agent's unanswered messages in arrival order.
func (s *Store) Pending(agent string) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		queue, _, err := agentBuckets(tx, agent)
		if err != nil || queue == nil {
			return err
		}
		return queue.ForEach(func(_, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read queue of agent %s: %w", agent, err)
	}
	return out, nil
}

// QueueLen is the number of the agent's unanswered messages.
func (s *Store) QueueLen(agent string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		queue, _, err := agentBuckets(tx, agent)
		if queue != nil {
			n = countKeys(queue)
		}
		return err
	})
	return n, err
}

// Done removes an answered message from the agent's queue. Called right
// after the reply was posted, it is the record that the reply went out:
// from then on the message is never delivered to the agent again. With
// notices, the removal and the notices are one transaction (used to give
// up on a message and say so).
func (s *Store) Done(agent, id string, notices ...Notice) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		queue, ids, err := agentBuckets(tx, agent)
		if err != nil {
			return err
		}
		if seq := ids.Get([]byte(id)); seq != nil {
			if err := queue.Delete(seq); err != nil {
				return err
			}
			if err := ids.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return putNotices(tx, notices)
	})
	if err != nil {
		return fmt.Errorf("mark message %s answered by agent %s: %w", id, agent, err)
	}
	return nil
}

// AddAttempt counts one failed delivery for each of the agent's messages
// and returns the new counts.
func (s *Store) AddAttempt(agent string, ids []string) (map[string]int, error) {
	counts := map[string]int{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		queue, idx, err := agentBuckets(tx, agent)
		if err != nil {
			return err
		}
		for _, id := range ids {
			seq := idx.Get([]byte(id))
			if seq == nil {
				continue
			}
			var e Entry
			if err := json.Unmarshal(queue.Get(seq), &e); err != nil {
				return err
			}
			e.Attempts++
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := queue.Put(seq, b); err != nil {
				return err
			}
			counts[id] = e.Attempts
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count delivery attempts of agent %s: %w", agent, err)
	}
	return counts, nil
}

// Outbox returns the notices not yet posted, oldest first.
func (s *Store) Outbox() ([]OutboxItem, error) {
	var out []OutboxItem
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var n Notice
			if err := json.Unmarshal(v, &n); err != nil {
				return err
			}
			out = append(out, OutboxItem{Seq: binary.BigEndian.Uint64(k), Notice: n})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// NoticePosted removes a posted notice from the outbox.
func (s *Store) NoticePosted(seq uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Delete(seqKey(seq))
	})
}

// Prune forgets delivery and message ids first seen before cutoff, except
// those of messages still waiting: a platform's redeliveries come within
// minutes or hours, so the ids need not be kept forever.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		pending := map[string]bool{}
		err := tx.Bucket(bucketAgents).ForEachBucket(func(name []byte) error {
			ids := tx.Bucket(bucketAgents).Bucket(name).Bucket(bucketIDs)
			if ids == nil {
				return nil
			}
			return ids.ForEach(func(k, _ []byte) error {
				pending["m\x00"+string(k)] = true
				return nil
			})
		})
		if err != nil {
			return err
		}
		seen := tx.Bucket(bucketSeen)
		var old [][]byte
		limit := uint64(cutoff.Unix())
		err = seen.ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < limit && !pending[string(k)] {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := seen.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}
