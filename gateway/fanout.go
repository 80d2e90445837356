package gateway

import (
	"slices"
	"time"

	"github.com/enslavism/enslavism/bus"
)

// fanOut is the one goroutine reading the presence watch. Each change is
// encoded once and the same frame is queued for every browser, under g.mu so
// that a browser registering concurrently gets either the change in its
// snapshot or the change as an event, never both nor neither.
func (g *Gateway) fanOut() {
	defer g.bgWG.Done()
	events := g.watcher.Events()
	for {
		select {
		case <-g.stop:
			return
		case ev, ok := <-events:
			if !ok {
				if err := g.watcher.Err(); err != nil && !g.isClosing() {
					g.onError(err)
				}
				return
			}
			g.apply(ev)
		}
	}
}

// apply records a presence event in the list and broadcasts it when it is a
// real change for browsers (a new startedAt with the same userData, load and
// region is not).
func (g *Gateway) apply(ev bus.Event) {
	id := ev.Slave.ID
	sj := slaveFromInfo(ev.Slave)
	g.mu.Lock()
	defer g.mu.Unlock()
	old, listed := g.slaves[id]
	var frame []byte
	switch ev.Kind {
	case bus.SlaveAdded, bus.SlaveUpdated:
		if listed && old.equal(sj) {
			return
		}
		typ := TypeSlaveAdded
		if listed {
			typ = TypeSlaveUpdated
		}
		g.slaves[id] = sj
		frame = encodeFrame(slaveMsg{Type: typ, Slave: sj})
	case bus.SlaveRemoved:
		if !listed {
			return
		}
		delete(g.slaves, id)
		frame = encodeFrame(slaveRemovedMsg{Type: TypeSlaveRemoved, ID: id})
	default:
		return
	}
	g.snapshot = nil
	g.log.Debug("slave "+ev.Kind.String(), keySlave, id, "browsers", len(g.conns))
	for c := range g.conns {
		c.enqueue(frame)
	}
}

// snapshotLocked returns the "slaves" frame of the current list, cached
// until the next change so that a reconnecting crowd shares one encoding.
// g.mu must be held.
func (g *Gateway) snapshotLocked() []byte {
	if g.snapshot == nil {
		ids := make([]string, 0, len(g.slaves))
		for id := range g.slaves {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		list := make([]slaveJSON, len(ids))
		for i, id := range ids {
			list[i] = g.slaves[id]
		}
		g.snapshot = encodeFrame(slavesMsg{Type: TypeSlaves, Slaves: list})
	}
	return g.snapshot
}

// register adds c to the fan-out after queueing hello and the current list
// for it. It returns false once shutdown has begun.
func (g *Gateway) register(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.connWG.Add(1)
	c.enqueue(g.hello)
	c.enqueue(g.snapshotLocked())
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) unregister(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// pingSlots is how many groups the browsers are split into for pings: one
// group is pinged every PingInterval/pingSlots, so that pings (and the
// writer goroutines they wake) are spread over the interval.
const pingSlots = 16

// pinger pings every browser once per PingInterval, from one goroutine and
// one ticker for the whole gateway rather than one per connection.
func (g *Gateway) pinger() {
	defer g.bgWG.Done()
	t := time.NewTicker(g.cfg.PingInterval / pingSlots)
	defer t.Stop()
	var slot uint64
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		g.mu.Lock()
		for c := range g.conns {
			if c.info.ID%pingSlots == slot {
				c.enqueuePing()
			}
		}
		g.mu.Unlock()
		slot = (slot + 1) % pingSlots
	}
}
