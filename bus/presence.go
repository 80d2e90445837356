package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Presence defaults.
const (
	DefaultTTL            = 3 * time.Second
	DefaultLimitMarkerTTL = 30 * time.Second
)

// PresenceConfig configures [OpenPresence]. The zero value is the contract's
// default: bucket "enslavism-slaves", TTL 3 s, markers kept 30 s, one
// replica, memory storage.
type PresenceConfig struct {
	// Subjects gives the prefix and so the bucket name "<prefix>-slaves".
	Subjects Subjects
	// TTL is how long a key lives without a heartbeat: a crashed slave leaves
	// every list within TTL. Whole seconds, at least 1 s; zero means
	// DefaultTTL. It applies when this call creates the bucket; an existing
	// bucket keeps its own TTL, which [Presence.TTL] reports.
	TTL time.Duration
	// LimitMarkerTTL is how long the purge marker of an expired key is kept,
	// so that a watch that recovers within that time still sees it. At least
	// 1 s; zero means DefaultLimitMarkerTTL. Applies on creation only.
	LimitMarkerTTL time.Duration
	// Replicas is the bucket's replica count (3 on a 3-node cluster); zero
	// means 1. Applies on creation only.
	Replicas int
	// FileStorage stores the bucket on disk instead of in memory. Presence is
	// rebuilt by heartbeats within one TTL, so memory is the default.
	FileStorage bool
	// Logger receives the presence logs; nil means slog.Default().
	Logger *slog.Logger
}

// Presence is the presence registry: the JetStream key-value bucket in which
// every live slave keeps its [SlaveInfo] under its ID. It is safe for
// concurrent use.
type Presence struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	ttl    time.Duration
	bucket string
	log    *slog.Logger
}

// OpenPresence opens the presence bucket, creating it with cfg when it does
// not exist yet (slaves and gateways both call it: whoever comes first
// creates it). An existing bucket is never edited.
func OpenPresence(ctx context.Context, js jetstream.JetStream, cfg PresenceConfig) (*Presence, error) {
	if err := ValidateID(cfg.Subjects.prefix()); err != nil {
		return nil, fmt.Errorf("bus: prefix: %w", err)
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl%time.Second != 0 {
		return nil, fmt.Errorf("bus: presence TTL %v: must be whole seconds, at least 1s", ttl)
	}
	marker := cfg.LimitMarkerTTL
	if marker == 0 {
		marker = DefaultLimitMarkerTTL
	}
	if marker < time.Second {
		return nil, fmt.Errorf("bus: presence LimitMarkerTTL %v: at least 1s", marker)
	}
	replicas := cfg.Replicas
	if replicas == 0 {
		replicas = 1
	}
	storage := jetstream.MemoryStorage
	if cfg.FileStorage {
		storage = jetstream.FileStorage
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	bucket := cfg.Subjects.Bucket()
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         bucket,
			Description:    "Enslavism presence: one key per live slave, kept alive by heartbeats",
			History:        1,
			TTL:            ttl,
			LimitMarkerTTL: marker,
			Replicas:       replicas,
			Storage:        storage,
			MaxValueSize:   int32(MaxMessageSize),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Created concurrently with another configuration: use theirs.
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bus: open presence bucket %s: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: presence bucket %s status: %w", bucket, err)
	}
	p := &Presence{js: js, kv: kv, ttl: st.TTL(), bucket: bucket, log: log.With("component", "presence", "bucket", bucket)}
	if p.ttl <= 0 {
		return nil, fmt.Errorf("bus: presence bucket %s has no TTL: crashed slaves would never leave; delete it and let it be re-created", bucket)
	}
	if kvs, ok := st.(*jetstream.KeyValueBucketStatus); ok && kvs.LimitMarkerTTL() == 0 {
		p.log.Warn("presence bucket has no LimitMarkerTTL: expiries reach watchers only through resyncs")
	}
	return p, nil
}

// TTL returns the bucket's TTL: the longest a crashed slave stays listed.
func (p *Presence) TTL() time.Duration { return p.ttl }

// Bucket returns the bucket's name.
func (p *Presence) Bucket() string { return p.bucket }

// KeyValue returns the underlying bucket, for tools and tests.
func (p *Presence) KeyValue() jetstream.KeyValue { return p.kv }

// List returns every live slave, sorted by ID.
func (p *Presence) List(ctx context.Context) ([]SlaveInfo, error) {
	snap, err := p.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return sortedInfos(snap), nil
}

// Registration is a slave's live presence: it re-puts the slave's key every
// TTL/3 until [Registration.Deregister] or [Registration.Stop]. It is safe for
// concurrent use.
type Registration struct {
	p      *Presence
	id     string
	log    *slog.Logger
	onLost func(error)

	mu    sync.Mutex // guards info, value, rev, ended, owned, attempted
	info  SlaveInfo
	value []byte
	rev   uint64
	ended bool
	owned bool // the last write succeeded: we hold the key
	// attempted is the value of the last write attempt: stored or not, its
	// acknowledgement may have been lost.
	attempted []byte

	stop chan struct{}
	done chan struct{}
}

// RegisterOptions configures [Presence.Register]. The zero value is fine.
type RegisterOptions struct {
	// OnLost, if set, is called when a heartbeat finds the key held by
	// another live slave (the ID was taken after this one's key expired,
	// e.g. during a long network partition); this registration keeps trying
	// to take it back. It runs on the heartbeat goroutine and must not block.
	OnLost func(error)
	// OnRestored, if set, is called when a heartbeat re-created the key
	// after it had expired (e.g. after a NATS reconnect). It runs on the
	// heartbeat goroutine and must not block.
	OnRestored func()
}

// Register publishes info under info.ID with Create, so that a second live
// slave with the same ID gets an error matching [ErrDuplicateID], and starts
// the heartbeat. StartedAt is set to now when zero.
func (p *Presence) Register(ctx context.Context, info SlaveInfo, opts RegisterOptions) (*Registration, error) {
	if info.StartedAt.IsZero() {
		info.StartedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	if len(info.UserData) == 0 {
		info.UserData = json.RawMessage("null")
	}
	value, err := Encode(&info)
	if err != nil {
		return nil, err
	}
	rev, err := p.create(ctx, info.ID, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("%w: %s", ErrDuplicateID, info.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: register %s: %w", info.ID, err)
	}
	r := &Registration{
		p:      p,
		id:     info.ID,
		log:    p.log.With("slave", info.ID),
		onLost: opts.OnLost,
		info:   info,
		value:  value,
		rev:    rev,
		owned:  true,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go r.heartbeat(opts.OnRestored)
	return r, nil
}

// create runs kv.Create so that a registration abandoned by ctx leaves no
// key behind: the write, once sent, may be stored although its
// acknowledgement is never read. The write gets its own deadline; when ctx
// ends first, create returns ctx's error at once and a goroutine (bounded by
// that deadline) deletes the key if the write succeeded after all.
func (p *Presence) create(ctx context.Context, key string, value []byte) (uint64, error) {
	type result struct {
		rev uint64
		err error
	}
	done := make(chan result, 1)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(p.ttl, 5*time.Second))
	go func() {
		defer cancel()
		rev, err := p.kv.Create(wctx, key, value)
		done <- result{rev, err}
	}()
	select {
	case r := <-done:
		return r.rev, r.err
	case <-ctx.Done():
		go func() {
			r := <-done
			if r.err != nil {
				return
			}
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.kv.Delete(dctx, key, jetstream.LastRevision(r.rev)); err == nil {
				p.log.Info("removed the presence key of an abandoned registration", "slave", key)
			}
		}()
		return 0, ctx.Err()
	}
}

// ID returns the registered slave ID.
func (r *Registration) ID() string { return r.id }

// Info returns the current presence value.
func (r *Registration) Info() SlaveInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// SetUserData replaces the slave's userData and publishes it at once;
// watchers see one update. It returns an error matching ErrTooLarge or
// ErrMalformed for bad JSON, ErrClosed after Deregister/Stop. When the write
// fails (NATS down) the value is still kept and published by the next
// successful heartbeat, and the error is returned.
func (r *Registration) SetUserData(ctx context.Context, userData json.RawMessage) error {
	if len(userData) == 0 {
		userData = json.RawMessage("null")
	}
	userData = append(json.RawMessage(nil), userData...)
	return r.update(ctx, func(info *SlaveInfo) { info.UserData = userData })
}

// SetLoad replaces the slave's load (nil removes it) and publishes it at
// once when it changed: watchers see one update; setting the load it
// already has writes nothing. The heartbeat keeps re-putting the current
// value. Errors are those of [Registration.SetUserData].
func (r *Registration) SetLoad(ctx context.Context, load *Load) error {
	if load != nil {
		l := *load
		load = &l
	}
	return r.update(ctx, func(info *SlaveInfo) { info.Load = load })
}

// update applies change to a copy of the presence value and writes it when
// its encoding differs from the current one.
func (r *Registration) update(ctx context.Context, change func(*SlaveInfo)) error {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return ErrClosed
	}
	info := r.info
	change(&info)
	value, err := Encode(&info)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	if string(value) == string(r.value) {
		r.mu.Unlock()
		return nil
	}
	r.info, r.value = info, value
	_, err = r.writeLocked(ctx)
	r.mu.Unlock()
	return err
}

// heartbeat re-puts the key every TTL/3 until stopped.
func (r *Registration) heartbeat(onRestored func()) {
	defer close(r.done)
	t := time.NewTicker(r.p.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.p.ttl/3)
		r.mu.Lock()
		wasOwned := r.owned
		restored, err := r.writeLocked(ctx)
		r.mu.Unlock()
		cancel()
		switch {
		case errors.Is(err, ErrDuplicateID):
			if wasOwned {
				r.log.Error("presence key taken by another slave with the same id", "err", err)
				if r.onLost != nil {
					r.onLost(err)
				}
			}
		case err != nil:
			r.log.Warn("presence heartbeat failed", "err", err)
		case restored:
			r.log.Info("presence restored")
			if onRestored != nil {
				onRestored()
			}
		}
	}
}

// writeLocked writes r.value: a compare-and-set on our last revision; when
// the key is gone (expired, deleted) it is created again and restored is
// true; when another slave holds it, an error matching ErrDuplicateID.
// r.mu must be held.
func (r *Registration) writeLocked(ctx context.Context) (restored bool, err error) {
	kv := r.p.kv
	rev, err := kv.Update(ctx, r.id, r.value, r.rev)
	if isMismatch(err) {
		// A write whose acknowledgement was lost (a timeout under load)
		// may have been stored: if the key holds a value this
		// registration wrote, it is still ours, at a newer revision.
		if e, gerr := kv.Get(ctx, r.id); gerr == nil && r.wrote(e.Value()) {
			rev, err = kv.Update(ctx, r.id, r.value, e.Revision())
		}
	}
	if isMismatch(err) {
		rev, err = kv.Create(ctx, r.id, r.value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			r.owned = false
			return false, fmt.Errorf("%w: %s", ErrDuplicateID, r.id)
		}
		restored = err == nil
	}
	r.attempted = r.value
	if err != nil {
		return false, fmt.Errorf("bus: presence put %s: %w", r.id, err)
	}
	r.rev = rev
	r.owned = true
	return restored, nil
}

// wrote reports whether v is the current value or the value of the last
// write whose outcome is unknown. r.mu must be held.
func (r *Registration) wrote(v []byte) bool {
	return string(v) == string(r.value) || (r.attempted != nil && string(v) == string(r.attempted))
}

func isMismatch(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

// end stops the heartbeat once and waits for it.
func (r *Registration) end() bool {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return false
	}
	r.ended = true
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	return true
}

// Deregister stops the heartbeat and deletes the key at once, so that every
// watcher sees the slave removed now rather than after the TTL. It does not
// delete a key another slave has taken since. Calling it again returns nil.
func (r *Registration) Deregister(ctx context.Context) error {
	if !r.end() {
		return nil
	}
	r.mu.Lock()
	rev, owned := r.rev, r.owned
	r.mu.Unlock()
	if !owned {
		return nil
	}
	err := r.p.kv.Delete(ctx, r.id, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isWrongLastSeq(err) {
		return fmt.Errorf("bus: deregister %s: %w", r.id, err)
	}
	return nil
}

// Stop stops the heartbeat and leaves the key to expire within the TTL, as a
// crash would. Use Deregister for a graceful exit.
func (r *Registration) Stop() { r.end() }

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
