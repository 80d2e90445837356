package bus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventKind says what happened to a slave.
type EventKind int

// The kinds of presence events.
const (
	SlaveAdded   EventKind = iota + 1 // a slave appeared
	SlaveUpdated                      // a slave's presence value changed (userData, load, region)
	SlaveRemoved                      // a slave left: deregistered, or its key expired
)

// String returns "added", "updated" or "removed".
func (k EventKind) String() string {
	switch k {
	case SlaveAdded:
		return "added"
	case SlaveUpdated:
		return "updated"
	case SlaveRemoved:
		return "removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change of the slave list. For SlaveRemoved, Slave is the last
// value the watcher delivered for that ID.
type Event struct {
	Kind  EventKind
	Slave SlaveInfo
}

// WatchOptions configures [Presence.Watch]. The zero value is fine.
type WatchOptions struct {
	// Buffer is the capacity of the Events channel; zero means 64.
	Buffer int
	// ResyncInterval is how often the watcher re-reads the whole bucket and
	// diffs it against what it delivered, whatever happens; zero means one
	// minute. It also re-reads at once after a NATS reconnect, when its
	// watch ends, and when a key has not been refreshed for 1.5 TTL.
	ResyncInterval time.Duration
}

// Watcher follows the presence bucket. It delivers a consistent snapshot
// ([Watcher.Snapshot]) and then, on [Watcher.Events], only real changes:
// heartbeats that change nothing are collapsed, and an expired key (purge
// marker) and a deleted one are both SlaveRemoved.
//
// Events are sent from the watcher's own goroutine, in order per slave. A
// consumer that keeps up receives every change. A slow consumer never blocks
// the watcher and never loses a change: while the channel is full, changes
// of the same slave are merged, and the consumer
// later receives for each slave the difference between what it last received
// and the current value (an add and a remove in between cancel out). Memory
// stays bounded by the number of slaves.
type Watcher struct {
	p      *Presence
	opts   WatchOptions
	events chan Event
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once

	snapshot []SlaveInfo

	// Owned by the run goroutine.
	kw         jetstream.KeyWatcher
	kwCancel   context.CancelFunc
	current    map[string]watchEntry
	delivered  map[string]SlaveInfo
	queue      []string
	queued     map[string]bool
	lastResync time.Time
	reconnects uint64

	errMu sync.Mutex
	err   error
}

type watchEntry struct {
	info     SlaveInfo
	raw      []byte
	lastSeen time.Time
}

// Watch starts a watcher. It returns once the initial snapshot is read; the
// watch then runs until ctx is done or [Watcher.Stop] is called, after which
// Events is closed.
func (p *Presence) Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = time.Minute
	}
	w := &Watcher{
		p:         p,
		opts:      opts,
		events:    make(chan Event, opts.Buffer),
		stopCh:    make(chan struct{}),
		done:      make(chan struct{}),
		delivered: map[string]SlaveInfo{},
		queued:    map[string]bool{},
	}
	kw, cancel, snap, err := p.openWatch(ctx)
	if err != nil {
		return nil, err
	}
	w.kw, w.kwCancel, w.current = kw, cancel, snap
	w.lastResync = time.Now()
	w.reconnects = p.reconnects()
	for id, e := range snap {
		w.delivered[id] = e.info
	}
	w.snapshot = sortedInfos(snap)
	go w.run(ctx)
	return w, nil
}

// Snapshot returns the slaves that were live when the watch started, sorted
// by ID. Events continue from exactly that state.
func (w *Watcher) Snapshot() []SlaveInfo { return slices.Clone(w.snapshot) }

// Events returns the channel of changes after the snapshot. It is closed when
// the watcher ends.
func (w *Watcher) Events() <-chan Event { return w.events }

// Done is closed when the watcher has ended.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err returns why the watcher ended: nil while it runs or after Stop, the
// context's error when its context ended.
func (w *Watcher) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// Stop ends the watcher and waits until its goroutine has returned. It is
// idempotent.
func (w *Watcher) Stop() {
	w.once.Do(func() { close(w.stopCh) })
	<-w.done
}

func (p *Presence) reconnects() uint64 {
	return p.js.Conn().Stats().Reconnects
}

// openWatch starts a WatchAll and reads its initial values.
func (p *Presence) openWatch(ctx context.Context) (jetstream.KeyWatcher, context.CancelFunc, map[string]watchEntry, error) {
	wctx, cancel := context.WithCancel(context.Background())
	kw, err := p.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("bus: watch %s: %w", p.bucket, err)
	}
	snap := map[string]watchEntry{}
	now := time.Now()
	for {
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				cancel()
				return nil, nil, nil, fmt.Errorf("bus: watch %s ended during the snapshot", p.bucket)
			}
			if e == nil {
				return kw, cancel, snap, nil
			}
			p.applyTo(snap, e, now)
		case <-ctx.Done():
			_ = kw.Stop()
			cancel()
			return nil, nil, nil, fmt.Errorf("bus: watch %s: %w", p.bucket, ctx.Err())
		}
	}
}

// snapshot reads the whole bucket once.
func (p *Presence) snapshot(ctx context.Context) (map[string]watchEntry, error) {
	kw, cancel, snap, err := p.openWatch(ctx)
	if err != nil {
		return nil, err
	}
	_ = kw.Stop()
	cancel()
	return snap, nil
}

// applyTo applies one bucket entry to m and reports whether the slave's
// value changed.
func (p *Presence) applyTo(m map[string]watchEntry, e jetstream.KeyValueEntry, now time.Time) bool {
	id := e.Key()
	if ValidateID(id) != nil {
		p.log.Warn("ignoring presence key that is not a valid id", "key", id)
		return false
	}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		_, had := m[id]
		delete(m, id)
		return had
	}
	old, had := m[id]
	if had && string(old.raw) == string(e.Value()) {
		old.lastSeen = now
		m[id] = old
		return false
	}
	info, err := DecodeSlaveInfo(e.Value())
	if err == nil && info.ID != id {
		err = fmt.Errorf("%w: value id %q under key %q", ErrMalformed, info.ID, id)
	}
	if err != nil {
		p.log.Warn("ignoring invalid presence value", "key", id, "err", err)
		return false
	}
	m[id] = watchEntry{info: info, raw: slices.Clone(e.Value()), lastSeen: now}
	return true
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	defer close(w.events)
	defer func() {
		if w.kw != nil {
			_ = w.kw.Stop()
			w.kwCancel()
		}
	}()
	checkEvery := min(w.p.ttl/3, time.Second)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		var out chan<- Event
		next, ok := w.peek()
		if ok {
			// Deliver before reading more: changes are merged only while
			// the consumer is behind by a whole buffer.
			select {
			case w.events <- next:
				w.commit(next)
				continue
			default:
			}
			out = w.events
		}
		var updates <-chan jetstream.KeyValueEntry
		if w.kw != nil {
			updates = w.kw.Updates()
		}
		select {
		case <-w.stopCh:
			return
		case <-ctx.Done():
			w.errMu.Lock()
			w.err = ctx.Err()
			w.errMu.Unlock()
			return
		case e, ok := <-updates:
			switch {
			case !ok:
				w.p.log.Warn("presence watch ended; re-reading the bucket")
				w.kwCancel()
				w.kw, w.kwCancel = nil, nil
				w.resync()
			case e != nil && w.p.applyTo(w.current, e, time.Now()):
				w.mark(e.Key())
			}
		case out <- next:
			w.commit(next)
		case now := <-tick.C:
			w.check(now)
		}
	}
}

// check decides whether the watch must be re-read: after a reconnect, when
// a key was not refreshed for 1.5 TTL (its expiry marker may have been
// lost), or every ResyncInterval.
func (w *Watcher) check(now time.Time) {
	reason := ""
	if r := w.p.reconnects(); r != w.reconnects {
		w.reconnects = r
		reason = "reconnected"
	} else if w.kw == nil {
		reason = "no watch"
	} else if now.Sub(w.lastResync) >= w.opts.ResyncInterval {
		reason = "periodic"
	} else if now.Sub(w.lastResync) >= w.p.ttl {
		stale := now.Add(-w.p.ttl * 3 / 2)
		for _, e := range w.current {
			if e.lastSeen.Before(stale) {
				reason = "stale key " + e.info.ID
				break
			}
		}
	}
	if reason != "" {
		w.p.log.Debug("presence resync", "reason", reason)
		w.resync()
	}
}

// resync replaces the watch with a new one and diffs its snapshot against
// the current state. On failure the old watch (if any) is kept and the next
// check tries again.
func (w *Watcher) resync() {
	w.lastResync = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), max(w.p.ttl, 2*time.Second))
	defer cancel()
	kw, kwCancel, snap, err := w.p.openWatch(ctx)
	if err != nil {
		w.p.log.Warn("presence resync failed", "err", err)
		return
	}
	if w.kw != nil {
		_ = w.kw.Stop()
		w.kwCancel()
	}
	w.kw, w.kwCancel = kw, kwCancel
	for id := range w.current {
		if _, ok := snap[id]; !ok {
			w.mark(id)
		}
	}
	for id, e := range snap {
		if old, ok := w.current[id]; !ok || string(old.raw) != string(e.raw) {
			w.mark(id)
		}
	}
	w.current = snap
}

func (w *Watcher) mark(id string) {
	if !w.queued[id] {
		w.queued[id] = true
		w.queue = append(w.queue, id)
	}
}

// peek returns the event for the first queued slave whose current value
// differs from what was delivered, dropping queued slaves with no change.
func (w *Watcher) peek() (Event, bool) {
	for len(w.queue) > 0 {
		id := w.queue[0]
		cur, live := w.current[id]
		was, seen := w.delivered[id]
		switch {
		case live && !seen:
			return Event{Kind: SlaveAdded, Slave: cur.info}, true
		case !live && seen:
			return Event{Kind: SlaveRemoved, Slave: was}, true
		case live && seen && !sameInfo(cur.info, was):
			return Event{Kind: SlaveUpdated, Slave: cur.info}, true
		}
		w.pop()
	}
	return Event{}, false
}

func (w *Watcher) commit(ev Event) {
	if ev.Kind == SlaveRemoved {
		delete(w.delivered, ev.Slave.ID)
	} else {
		w.delivered[ev.Slave.ID] = ev.Slave
	}
	w.pop()
}

func (w *Watcher) pop() {
	delete(w.queued, w.queue[0])
	w.queue[0] = ""
	w.queue = w.queue[1:]
	if len(w.queue) == 0 {
		w.queue = nil
	}
}

func sameInfo(a, b SlaveInfo) bool {
	return a.ID == b.ID && a.StartedAt.Equal(b.StartedAt) && string(a.UserData) == string(b.UserData) &&
		a.Region == b.Region && sameLoad(a.Load, b.Load)
}

func sameLoad(a, b *Load) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sortedInfos(m map[string]watchEntry) []SlaveInfo {
	out := make([]SlaveInfo, 0, len(m))
	for _, e := range m {
		out = append(out, e.info)
	}
	slices.SortFunc(out, func(a, b SlaveInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
