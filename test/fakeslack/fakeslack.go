// Package fakeslack is a Slack stand-in on loopback for tests and demos. It
// speaks Slack's real wire protocol for what clawrun uses, so the product's
// own slack-go client talks to it unchanged:
//
//   - Web API (form or JSON posts under /api/): auth.test (with the
//     X-OAuth-Scopes header), apps.connections.open, chat.postMessage
//     (with message metadata), conversations.replies and
//     conversations.history (include_all_metadata, oldest/latest,
//     cursors; the history scope of the conversation's type checked as
//     missing_scope), reactions.add, reactions.remove; tokens checked as
//     Slack does (HTTP 200 with ok:false, error invalid_auth / not_authed);
//   - a post accepted with its response held back (StallPosts): the crash
//     window between Slack taking a message and the client hearing so;
//   - Socket Mode: apps.connections.open returns a one-time ws:// URL on the
//     same server; the connection gets `hello`, WebSocket pings, and the
//     `events_api` envelopes a test injects with Send; acks are recorded by
//     envelope_id; `disconnect` (refresh_requested) on demand;
//   - rate limits: the next N calls of a method answer 429 with Retry-After;
//   - Events API: signed (or badly signed) event callbacks POSTed to a URL.
//
// It lives under test/ and must not be imported by product code.
package fakeslack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults of a new Server.
const (
	BotToken  = "xoxb-fake-bot-token-0000"
	AppToken  = "xapp-1-fake-app-token-0000"
	BotUserID = "UBOT"
	BotID     = "BBOT"
	TeamID    = "TFAKE"
	AppID     = "AFAKE"
)

// Post is a message chat.postMessage accepted.
type Post struct {
	Channel  string
	ThreadTS string // thread_ts, empty for a top-level message
	Text     string
	TS       string    // the ts the fake assigned
	At       time.Time // when the fake received the call (benchmarks)
	// Metadata is the message metadata sent with the post, if any.
	Metadata *Metadata
}

// Reaction is a reaction currently on a message.
type Reaction struct {
	Channel, TS, Name string
}

// Options configure a Server; zero values take the defaults above.
type Options struct {
	BotToken, AppToken string
	// Scopes are reported by auth.test in X-OAuth-Scopes; nil means every
	// scope clawrun's manifest asks for.
	Scopes []string
	// PingInterval is how often the socket is pinged (Slack does, and
	// slack-go reconnects when pings stop); default 2s.
	PingInterval time.Duration
	// RedeliverAfter, when set, redelivers an envelope not acked within
	// this time, up to 3 times, as Slack does.
	RedeliverAfter time.Duration
}

// Server is a running fake Slack.
type Server struct {
	URL    string // http://127.0.0.1:PORT
	APIURL string // URL + "/api/", for slack-go's OptionAPIURL

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change
	conns     map[*conn]bool
	connCount int
	tickets   map[string]bool
	seq       int
	tsSeq     int
	pending   []*envelope // sent while no socket was open
	envelopes map[string]*envelope
	acks      []string
	posts     []Post
	messages  []message // every message in every conversation, in ts order (history.go)
	stall     int       // posts whose response is held back (StallPosts)
	reactions []Reaction
	calls     map[string]int
	fail      map[string]*failure
	closed    bool
	stop      chan struct{}
	wg        sync.WaitGroup
}

type failure struct {
	n          int
	retryAfter int
}

type envelope struct {
	ID      string
	EventID string
	Attempt int
	payload json.RawMessage
	sentAt  time.Time
	acked   bool
	ackedAt time.Time // first ack
}

type conn struct {
	n  int // 1 for the first connection
	ws *websocket.Conn
	mu sync.Mutex // serialises writes other than control frames
}

// New starts a fake Slack on 127.0.0.1. Close it when done.
func New(o Options) *Server {
	if o.BotToken == "" {
		o.BotToken = BotToken
	}
	if o.AppToken == "" {
		o.AppToken = AppToken
	}
	if o.Scopes == nil {
		o.Scopes = []string{"app_mentions:read", "channels:history", "groups:history", "im:history", "mpim:history", "chat:write", "reactions:write"}
	}
	if o.PingInterval == 0 {
		o.PingInterval = 2 * time.Second
	}
	s := &Server{
		opts:      o,
		changed:   make(chan struct{}),
		conns:     map[*conn]bool{},
		tickets:   map[string]bool{},
		envelopes: map[string]*envelope{},
		calls:     map[string]int{},
		fail:      map[string]*failure{},
		stop:      make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.api)
	mux.HandleFunc("/link/", s.socket)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	s.APIURL = s.srv.URL + "/api/"
	if o.RedeliverAfter > 0 {
		s.wg.Add(1)
		go s.redeliverLoop()
	}
	return s
}

// Close drops every connection and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for c := range s.conns {
		_ = c.ws.Close()
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.wg.Wait()
}

// notify wakes waiters; s.mu must be held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor blocks until cond (called with s.mu held) is true or timeout.
func (s *Server) waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("fakeslack: timed out after %s waiting for %s", timeout, what)
		}
	}
}

// nextTS returns a fresh, increasing Slack timestamp; s.mu must be held.
func (s *Server) nextTS() string {
	s.tsSeq++
	return fmt.Sprintf("1700000000.%06d", s.tsSeq)
}

// NextTS returns a fresh, increasing message timestamp, for events a test
// builds.
func (s *Server) NextTS() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextTS()
}

// ---- Web API ----

// FailNext makes the next n calls of method (e.g. "chat.postMessage")
// answer HTTP 429 with Retry-After: retryAfter seconds.
func (s *Server) FailNext(method string, n, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] = &failure{n: n, retryAfter: retryAfter}
}

// Calls is how many times method was called, 429s included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Posts returns the messages posted so far, in order.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Post(nil), s.posts...)
}

// WaitPosts waits until at least n messages were posted and returns all.
func (s *Server) WaitPosts(n int, timeout time.Duration) ([]Post, error) {
	err := s.waitFor(timeout, fmt.Sprintf("%d posts", n), func() bool { return len(s.posts) >= n })
	return s.Posts(), err
}

// WaitPost waits until a post for which match is true was made and
// returns it (the first such post); what names it in the timeout error.
func (s *Server) WaitPost(timeout time.Duration, what string, match func(Post) bool) (Post, error) {
	var found Post
	err := s.waitFor(timeout, what, func() bool {
		for _, p := range s.posts {
			if match(p) {
				found = p
				return true
			}
		}
		return false
	})
	return found, err
}

// Reactions returns the reactions currently on messages.
func (s *Server) Reactions() []Reaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Reaction(nil), s.reactions...)
}

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	params, err := readParams(r)
	if err != nil {
		reply(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	if s.call(w, method, params, r) {
		// Accepted but unanswered, as if the connection died on the
		// way back: the client learns nothing until it gives up.
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
	}
}

// call answers one Web API call under s.mu; it reports true for a post
// StallPosts holds: the caller then writes no response.
func (s *Server) call(w http.ResponseWriter, method string, params map[string]string, r *http.Request) (stall bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	s.notify()
	if f := s.fail[method]; f != nil && f.n > 0 {
		f.n--
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"ok":false,"error":"ratelimited"}`))
		return
	}
	token := params["token"]
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	}
	want := s.opts.BotToken
	if method == "apps.connections.open" {
		want = s.opts.AppToken
	}
	switch {
	case token == "":
		reply(w, map[string]any{"ok": false, "error": "not_authed"})
		return
	case method == "apps.connections.open" && !strings.HasPrefix(token, "xapp-"):
		reply(w, map[string]any{"ok": false, "error": "not_allowed_token_type"})
		return
	case token != want:
		reply(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	switch method {
	case "auth.test":
		w.Header().Set("X-OAuth-Scopes", strings.Join(s.opts.Scopes, ","))
		reply(w, map[string]any{"ok": true, "url": "https://fake.slack.com/", "team": "Fake Team", "user": "clawrun",
			"team_id": TeamID, "user_id": BotUserID, "bot_id": BotID, "is_enterprise_install": false})
	case "apps.connections.open":
		s.seq++
		ticket := fmt.Sprintf("ticket-%d", s.seq)
		s.tickets[ticket] = true
		ws := "ws" + strings.TrimPrefix(s.URL, "http") + "/link/?ticket=" + ticket + "&app_id=" + AppID
		reply(w, map[string]any{"ok": true, "url": ws})
	case "chat.postMessage":
		channel, text := params["channel"], params["text"]
		switch {
		case channel == "":
			reply(w, map[string]any{"ok": false, "error": "channel_not_found"})
		case strings.TrimSpace(text) == "":
			reply(w, map[string]any{"ok": false, "error": "no_text"})
		case len([]rune(text)) > 40000:
			reply(w, map[string]any{"ok": false, "error": "msg_too_long"})
		default:
			md, ok := parseMetadata(params["metadata"])
			if !ok {
				reply(w, map[string]any{"ok": false, "error": "invalid_metadata_format"})
				return
			}
			p := Post{Channel: channel, ThreadTS: params["thread_ts"], Text: text, TS: s.nextTS(), At: time.Now(), Metadata: md}
			s.posts = append(s.posts, p)
			m := message{Channel: channel, TS: p.TS, ThreadTS: p.ThreadTS, User: BotUserID, BotID: BotID, Text: text, Metadata: md}
			s.addMessage(m)
			if s.stall > 0 {
				s.stall--
				return true
			}
			reply(w, map[string]any{"ok": true, "channel": channel, "ts": p.TS, "message": m.wire(true)})
		}
	case "conversations.replies", "conversations.history":
		s.history(w, method, params)
	case "reactions.add", "reactions.remove":
		re := Reaction{Channel: params["channel"], TS: params["timestamp"], Name: params["name"]}
		if re.Channel == "" || re.TS == "" || re.Name == "" {
			reply(w, map[string]any{"ok": false, "error": "invalid_arguments"})
			return
		}
		i := -1
		for j, x := range s.reactions {
			if x == re {
				i = j
			}
		}
		switch {
		case method == "reactions.add" && i >= 0:
			reply(w, map[string]any{"ok": false, "error": "already_reacted"})
		case method == "reactions.add":
			s.reactions = append(s.reactions, re)
			reply(w, map[string]any{"ok": true})
		case i < 0:
			reply(w, map[string]any{"ok": false, "error": "no_reaction"})
		default:
			s.reactions = append(s.reactions[:i], s.reactions[i+1:]...)
			reply(w, map[string]any{"ok": true})
		}
	default:
		reply(w, map[string]any{"ok": false, "error": "unknown_method"})
	}
	return
}

// readParams accepts what slack-go sends: form posts, query strings, and
// JSON bodies.
func readParams(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil && err.Error() != "EOF" {
			return nil, err
		}
		for k, v := range m {
			switch v.(type) {
			case map[string]any, []any:
				// An object (e.g. metadata) as the JSON a form field holds.
				b, _ := json.Marshal(v)
				out[k] = string(b)
			default:
				out[k] = fmt.Sprint(v)
			}
		}
		return out, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	for k := range r.Form {
		out[k] = r.Form.Get(k)
	}
	return out, nil
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ---- Socket Mode ----

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) socket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.tickets[ticket]
	delete(s.tickets, ticket) // one connection per apps.connections.open, as on Slack
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.connCount++
	c := &conn{n: s.connCount, ws: ws}
	s.conns[c] = true
	s.wg.Add(2)
	s.mu.Unlock()

	_ = c.write(map[string]any{
		"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": AppID},
		"debug_info":      map[string]any{"host": "fakeslack", "build_number": 1, "approximate_connection_time": 18060},
	})
	s.mu.Lock()
	// Envelopes sent while nobody was connected go out now, in order.
	var pending []json.RawMessage
	for _, e := range s.pending {
		e.sentAt = time.Now()
		pending = append(pending, e.payload)
	}
	s.pending = nil
	s.notify()
	s.mu.Unlock()
	for _, p := range pending {
		_ = c.write(p)
	}

	stopPing := make(chan struct{})
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.opts.PingInterval)
		defer t.Stop()
		ping := func() bool {
			return c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)) == nil
		}
		if !ping() {
			return
		}
		for {
			select {
			case <-stopPing:
				return
			case <-s.stop:
				return
			case <-t.C:
				if !ping() {
					return
				}
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		defer close(stopPing)
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.notify()
			s.mu.Unlock()
			_ = ws.Close()
		}()
		for {
			var ack struct {
				EnvelopeID string          `json:"envelope_id"`
				Payload    json.RawMessage `json:"payload"`
			}
			if err := ws.ReadJSON(&ack); err != nil {
				return
			}
			s.mu.Lock()
			if e := s.envelopes[ack.EnvelopeID]; e != nil {
				if !e.acked {
					e.ackedAt = time.Now()
				}
				e.acked = true
			}
			s.acks = append(s.acks, ack.EnvelopeID)
			s.notify()
			s.mu.Unlock()
		}
	}()
}

func (c *conn) write(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if raw, ok := v.(json.RawMessage); ok {
		return c.ws.WriteMessage(websocket.TextMessage, raw)
	}
	return c.ws.WriteJSON(v)
}

// Connections is how many Socket Mode connections were opened so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connCount
}

// WaitConnections waits until n connections were opened in total and one is
// open now.
func (s *Server) WaitConnections(n int, timeout time.Duration) error {
	return s.waitFor(timeout, fmt.Sprintf("socket mode connection #%d", n), func() bool {
		return s.connCount >= n && len(s.conns) > 0
	})
}

// Send wraps an inner event (e.g. a message event as a map or struct that
// marshals to Slack's JSON) in an event_callback and an events_api envelope,
// and delivers it on the open connection, or on the next one if none is
// open. It returns the envelope_id.
func (s *Server) Send(event any) string {
	inner, err := json.Marshal(event)
	if err != nil {
		panic(fmt.Sprintf("fakeslack: Send: %v", err))
	}
	s.mu.Lock()
	s.seq++
	e := &envelope{ID: fmt.Sprintf("env-%04d", s.seq), EventID: fmt.Sprintf("Ev%06d", s.seq)}
	e.payload = wrap(e, inner)
	s.envelopes[e.ID] = e
	s.recordEvent(inner)
	s.mu.Unlock()
	s.deliver(e)
	return e.ID
}

// EventID is the event_id inside the envelope.
func (s *Server) EventID(envelopeID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.envelopes[envelopeID]; e != nil {
		return e.EventID
	}
	return ""
}

// SentAt is when the envelope was last written to a connection (zero while
// it waits for one): the start of a message's round trip in benchmarks.
func (s *Server) SentAt(envelopeID string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.envelopes[envelopeID]; e != nil {
		return e.sentAt
	}
	return time.Time{}
}

// AckedAt is when the envelope was first acknowledged (zero if not yet):
// for clawrun, when the message was stored.
func (s *Server) AckedAt(envelopeID string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.envelopes[envelopeID]; e != nil {
		return e.ackedAt
	}
	return time.Time{}
}

// wrap builds the envelope's wire form; s.mu must be held.
func wrap(e *envelope, inner json.RawMessage) json.RawMessage {
	cb, _ := json.Marshal(callback(e.EventID, inner))
	reason := ""
	if e.Attempt > 0 {
		reason = "timeout"
	}
	out, _ := json.Marshal(map[string]any{
		"envelope_id": e.ID, "type": "events_api", "accepts_response_payload": false,
		"retry_attempt": e.Attempt, "retry_reason": reason, "payload": json.RawMessage(cb),
	})
	return out
}

func callback(eventID string, inner json.RawMessage) map[string]any {
	return map[string]any{
		"token": "fake-verification-token", "team_id": TeamID, "api_app_id": AppID,
		"event": inner, "type": "event_callback", "event_id": eventID,
		"event_time": time.Now().Unix(), "authorizations": []any{map[string]any{
			"team_id": TeamID, "user_id": BotUserID, "is_bot": true,
		}},
		"is_ext_shared_channel": false, "event_context": "fake",
	}
}

// deliver writes e to the newest open connection (an old one may be on
// its way out after a disconnect), or queues it.
func (s *Server) deliver(e *envelope) {
	s.mu.Lock()
	var c *conn
	for x := range s.conns {
		if c == nil || x.n > c.n {
			c = x
		}
	}
	e.sentAt = time.Now()
	payload := e.payload
	if c == nil {
		s.pending = append(s.pending, e)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := c.write(payload); err != nil {
		s.mu.Lock()
		s.pending = append(s.pending, e)
		s.mu.Unlock()
	}
}

// Redeliver sends an envelope again, as Slack does when it was not acked in
// time: same envelope_id and event_id, retry_attempt one higher.
func (s *Server) Redeliver(envelopeID string) {
	s.mu.Lock()
	e := s.envelopes[envelopeID]
	if e == nil {
		s.mu.Unlock()
		panic("fakeslack: Redeliver of unknown envelope " + envelopeID)
	}
	e.Attempt++
	var outer struct {
		Payload struct {
			Event json.RawMessage `json:"event"`
		} `json:"payload"`
	}
	_ = json.Unmarshal(e.payload, &outer)
	e.payload = wrap(e, outer.Payload.Event)
	s.mu.Unlock()
	s.deliver(e)
}

func (s *Server) redeliverLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RedeliverAfter / 4)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		var due []string
		s.mu.Lock()
		for id, e := range s.envelopes {
			if !e.acked && !e.sentAt.IsZero() && e.Attempt < 3 && time.Since(e.sentAt) > s.opts.RedeliverAfter && !s.isPending(e) {
				due = append(due, id)
			}
		}
		s.mu.Unlock()
		for _, id := range due {
			s.Redeliver(id)
		}
	}
}

func (s *Server) isPending(e *envelope) bool {
	for _, p := range s.pending {
		if p == e {
			return true
		}
	}
	return false
}

// Acked reports whether the envelope was acknowledged.
func (s *Server) Acked(envelopeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.envelopes[envelopeID]
	return e != nil && e.acked
}

// Acks returns every ack received, in order (an envelope acked twice
// appears twice).
func (s *Server) Acks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.acks...)
}

// WaitAck waits until the envelope is acknowledged.
func (s *Server) WaitAck(envelopeID string, timeout time.Duration) error {
	return s.waitFor(timeout, "ack of "+envelopeID, func() bool {
		e := s.envelopes[envelopeID]
		return e != nil && e.acked
	})
}

// Disconnect sends Slack's `disconnect` message (reason e.g.
// "refresh_requested" or "warning") on every open connection. slack-go
// then reconnects through apps.connections.open; the old connection is
// closed by the client, or by the fake after grace.
func (s *Server) Disconnect(reason string, grace time.Duration) {
	s.mu.Lock()
	var cs []*conn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.write(map[string]any{"type": "disconnect", "reason": reason,
			"debug_info": map[string]any{"host": "fakeslack"}})
		go func() {
			select {
			case <-time.After(grace):
			case <-s.stop:
			}
			_ = c.ws.Close()
		}()
	}
}

// DropConnections closes every socket abruptly, as a network failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.ws.Close()
	}
}

// ---- Events API over HTTP ----

// EventCallback builds the JSON body of an event_callback carrying the
// inner event, with a fresh event_id (also returned).
func (s *Server) EventCallback(event any) (body []byte, eventID string) {
	inner, err := json.Marshal(event)
	if err != nil {
		panic(fmt.Sprintf("fakeslack: EventCallback: %v", err))
	}
	s.mu.Lock()
	s.seq++
	eventID = fmt.Sprintf("Ev%06d", s.seq)
	s.mu.Unlock()
	body, _ = json.Marshal(callback(eventID, inner))
	return body, eventID
}

// URLVerification is the body Slack sends when a request URL is set.
func URLVerification(challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"token": "fake-verification-token", "challenge": challenge, "type": "url_verification"})
	return b
}

// Sign returns Slack's v0 signature of body sent at ts.
func Sign(secret string, ts time.Time, body []byte) string {
	return sign(secret, strconv.FormatInt(ts.Unix(), 10), body)
}

// PostSigned POSTs body to url as Slack does, signed with secret at ts.
func PostSigned(ctx context.Context, url, secret string, ts time.Time, body []byte) (*http.Response, error) {
	return post(ctx, url, strconv.FormatInt(ts.Unix(), 10), Sign(secret, ts, body), body)
}

// PostBadlySigned POSTs body with a well-formed signature made with the
// wrong secret.
func PostBadlySigned(ctx context.Context, url string, body []byte) (*http.Response, error) {
	return PostSigned(ctx, url, "not-the-signing-secret", time.Now(), body)
}

// PostUnsigned POSTs body without signature headers.
func PostUnsigned(ctx context.Context, url string, body []byte) (*http.Response, error) {
	return post(ctx, url, "", "", body)
}
