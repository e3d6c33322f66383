package gateway

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// The write-ahead log and the checkpoint.
//
// The log file (path+"-wal") is a magic string followed by records:
//
//	length uint32 | crc32c uint32 | lsn uint64 | payload (JSON change, length bytes)
//
// all big endian; the CRC covers lsn and payload. Records are numbered
// (lsn) without gaps. A change is appended and fdatasynced before it is
// applied to the state or its call returns: one sync per change, where a
// bbolt commit does two.
//
// The checkpoint is the bbolt file (path) with the whole state and, in
// meta/lsn, the number of the last record it contains. Checkpointing:
//
//  1. one bbolt transaction replaces the state and sets meta/lsn = L
//     (bbolt syncs it before Commit returns);
//  2. a new, empty log is written to path+"-wal.tmp" and fsynced,
//  3. renamed over path+"-wal", and the directory fsynced.
//
// Opening loads the checkpoint (lsn L), then reads the log: records up to
// L are already in the checkpoint and skipped, the next must be L+1, and
// so on. The first record whose header or CRC does not check, or that
// runs past the end of the file, ends the log: it is the torn tail of a
// write a crash interrupted, which was never synced, so never acked, and
// is ignored (Slack redelivers the message). Then the store checkpoints,
// so it starts from an empty log and no torn bytes stay in the file.
//
// A crash between 1 and 3 leaves the old log, whose records are all <= L
// and skipped, or the new empty one; a stale .tmp is removed on open.
// Either way the state opened is the state before the crash.
var walMagic = []byte("clawwal1")

const (
	recHeader = 16
	// maxRecord bounds a length read from the file, so that a torn header
	// cannot make replay allocate gigabytes.
	maxRecord = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCrash is returned by a checkpoint that a test stopped at crashAt.
var errCrash = errors.New("checkpoint stopped (test crash point)")

type wal struct {
	path string
	f    *os.File
	size int64  // bytes written: the next record goes here
	lsn  uint64 // number of the last record written
}

func (w *wal) append(c *change) error {
	payload, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if len(payload) > maxRecord {
		return fmt.Errorf("record of %d bytes exceeds the limit of %d", len(payload), maxRecord)
	}
	lsn := w.lsn + 1
	buf := make([]byte, recHeader+len(payload))
	binary.BigEndian.PutUint32(buf[0:], uint32(len(payload)))
	binary.BigEndian.PutUint64(buf[8:], lsn)
	copy(buf[recHeader:], payload)
	binary.BigEndian.PutUint32(buf[4:], crc32.Checksum(buf[8:], crcTable))
	if _, err := w.f.WriteAt(buf, w.size); err != nil {
		return err
	}
	// fdatasync: the data and the new file size, without mtime.
	if err := syscall.Fdatasync(int(w.f.Fd())); err != nil {
		return &os.SyscallError{Syscall: "fdatasync", Err: err}
	}
	w.size += int64(len(buf))
	w.lsn = lsn
	return nil
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// readLog applies to st the valid records of a log after lsn and returns
// the last lsn applied. A record that
// checks but does not follow (a gap) or does not decode is an error: that
// is damage, not a torn write, and guessing would lose messages.
func readLog(data []byte, st *state, after uint64) (last uint64, err error) {
	last = after
	if len(data) == 0 {
		return last, nil
	}
	if len(data) < len(walMagic) || string(data[:len(walMagic)]) != string(walMagic) {
		return 0, errors.New("not a clawrun write-ahead log (bad magic)")
	}
	off := len(walMagic)
	for len(data)-off >= recHeader {
		n := binary.BigEndian.Uint32(data[off:])
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n > maxRecord || int64(len(data)-off-recHeader) < int64(n) {
			break // torn: runs past the end
		}
		body := data[off+8 : off+recHeader+int(n)]
		if crc32.Checksum(body, crcTable) != sum {
			break // torn: partly written
		}
		lsn := binary.BigEndian.Uint64(body)
		if lsn > after {
			if lsn != last+1 {
				return 0, fmt.Errorf("log record %d at offset %d follows record %d: records are missing", lsn, off, last)
			}
			var c change
			if err := json.Unmarshal(body[8:], &c); err != nil {
				return 0, fmt.Errorf("log record %d at offset %d: %w", lsn, off, err)
			}
			st.apply(&c)
			last = lsn
		}
		off += recHeader + int(n)
	}
	return last, nil
}

// replay loads the checkpoint, replays the log and checkpoints.
func (s *Store) replay() error {
	st := newState()
	var lsn uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		lsn, err = loadCheckpoint(tx, st)
		return err
	})
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	walPath := s.path + "-wal"
	if err := os.Remove(walPath + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data, err := os.ReadFile(walPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	last, err := readLog(data, st, lsn)
	if err != nil {
		return fmt.Errorf("replay %s: %w", walPath, err)
	}
	if st.id == "" {
		// A new store, or one from before stores had an identity. The
		// checkpoint that ends every open makes it durable before any
		// post can carry it.
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("make store id: %w", err)
		}
		st.id = hex.EncodeToString(b[:])
	}
	s.st = st
	s.log = &wal{path: walPath, lsn: last}
	return s.checkpoint()
}

// checkpoint folds the log into the bbolt file and starts an empty log.
// The caller holds wmu (or is opening the store).
func (s *Store) checkpoint() error {
	lsn := s.log.lsn
	err := s.db.Update(func(tx *bolt.Tx) error { return writeCheckpoint(tx, s.st, lsn) })
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", s.path, err)
	}
	if s.crashAt == "checkpointed" {
		return errCrash
	}
	tmp := s.log.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("new write-ahead log: %w", err)
	}
	if _, err := f.Write(walMagic); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("new write-ahead log %s: %w", tmp, err)
	}
	if s.crashAt == "log-written" {
		f.Close()
		return errCrash
	}
	if err := os.Rename(tmp, s.log.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("new write-ahead log: %w", err)
	}
	// From here the name is the new log: switch to it whatever happens.
	s.log.close()
	s.log = &wal{path: s.log.path, f: f, size: int64(len(walMagic)), lsn: lsn}
	if s.crashAt == "renamed" {
		return errCrash
	}
	if err := syncDir(filepath.Dir(s.log.path)); err != nil {
		// Which log a crash now leaves is unknown (both are valid for
		// the state, but the next append would go to an unlinked file
		// if the rename is lost): stop changing.
		s.failed = fmt.Errorf("new write-ahead log %s: %w (restart clawrun serve)", s.log.path, err)
		return s.failed
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

// writeCheckpoint replaces the content of the bbolt file with st.
func writeCheckpoint(tx *bolt.Tx, st *state, lsn uint64) error {
	for _, name := range [][]byte{bucketSeen, bucketOutbox, bucketAgents, bucketMeta} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	seen, err := tx.CreateBucket(bucketSeen)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(st.seen))
	for k := range st.seen {
		keys = append(keys, k)
	}
	slices.Sort(keys) // bbolt fills pages best in key order
	for _, k := range keys {
		if err := seen.Put([]byte(k), seqKey(st.seen[k])); err != nil {
			return err
		}
	}
	out, err := tx.CreateBucket(bucketOutbox)
	if err != nil {
		return err
	}
	if err := out.SetSequence(st.outSeq); err != nil {
		return err
	}
	for _, it := range st.outbox {
		b, err := json.Marshal(it.Notice)
		if err != nil {
			return err
		}
		if err := out.Put(seqKey(it.Seq), b); err != nil {
			return err
		}
	}
	agents, err := tx.CreateBucket(bucketAgents)
	if err != nil {
		return err
	}
	for name, q := range st.agents {
		a, err := agents.CreateBucket([]byte(name))
		if err != nil {
			return err
		}
		queue, err := a.CreateBucket(bucketQueue)
		if err != nil {
			return err
		}
		ids, err := a.CreateBucket(bucketIDs)
		if err != nil {
			return err
		}
		if err := queue.SetSequence(q.seq); err != nil {
			return err
		}
		for _, e := range q.entries {
			b, err := json.Marshal(e.Entry)
			if err != nil {
				return err
			}
			if err := queue.Put(seqKey(e.Seq), b); err != nil {
				return err
			}
		}
		for id, seq := range q.ids {
			if err := ids.Put([]byte(id), seqKey(seq)); err != nil {
				return err
			}
		}
	}
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keyStoreID, []byte(st.id)); err != nil {
		return err
	}
	return meta.Put(keyLSN, seqKey(lsn))
}

// loadCheckpoint reads the bbolt file into st and returns its lsn. A file
// of the bbolt-only store that came before the log has no meta bucket: its
// lsn is 0 and it loads the same.
func loadCheckpoint(tx *bolt.Tx, st *state) (uint64, error) {
	var lsn uint64
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(keyLSN); len(v) == 8 {
			lsn = binary.BigEndian.Uint64(v)
		}
		st.id = string(meta.Get(keyStoreID))
	}
	if seen := tx.Bucket(bucketSeen); seen != nil {
		err := seen.ForEach(func(k, v []byte) error {
			var stamp uint64
			if len(v) == 8 {
				stamp = binary.BigEndian.Uint64(v)
			}
			st.seen[string(k)] = stamp
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if out := tx.Bucket(bucketOutbox); out != nil {
		st.outSeq = out.Sequence()
		err := out.ForEach(func(k, v []byte) error {
			var n Notice
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("outbox %x: %w", k, err)
			}
			seq := binary.BigEndian.Uint64(k)
			st.outbox = append(st.outbox, OutboxItem{Seq: seq, Notice: n})
			st.outSeq = max(st.outSeq, seq)
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	agents := tx.Bucket(bucketAgents)
	if agents == nil {
		return lsn, nil
	}
	err := agents.ForEachBucket(func(name []byte) error {
		a := agents.Bucket(name)
		q := st.queue(string(name))
		queue := a.Bucket(bucketQueue)
		if queue == nil {
			return nil
		}
		q.seq = queue.Sequence()
		return queue.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("queue of agent %s, %x: %w", name, k, err)
			}
			seq := binary.BigEndian.Uint64(k)
			q.entries = append(q.entries, queued{Agent: string(name), Seq: seq, Entry: e})
			q.ids[e.Message.ID] = seq
			q.seq = max(q.seq, seq)
			return nil
		})
	})
	return lsn, err
}
