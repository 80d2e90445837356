package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/enslavism/enslavism/slave"
	"github.com/pion/webrtc/v4"
)

// Demo room limits.
const (
	demoCapacity   = 8
	demoTick       = 50 * time.Millisecond // dots broadcast at 20 Hz
	maxChatMessage = 500                   // bytes
)

// demoNames are the demo rooms' names, reused with a number past the end.
var demoNames = []string{"Andromeda", "Betelgeuse", "Cassiopeia", "Draco", "Eridanus", "Fornax", "Gemini", "Hydra"}

func demoName(i int) string {
	name := demoNames[i%len(demoNames)]
	if i >= len(demoNames) {
		name = fmt.Sprintf("%s %d", name, i/len(demoNames)+1)
	}
	return name
}

// demoUserData is what browsers see of a demo room.
type demoUserData struct {
	Name     string `json:"name"`
	Players  int    `json:"players"`
	Capacity int    `json:"capacity"`
	Demo     bool   `json:"demo"`
}

// room is a demo slave's business logic: a chat over the reliable channel
// "chat" (every message goes to every player, the sender included) and
// shared moving dots over the unordered, unreliable channel "dots" (players
// send their position; the room broadcasts all positions 20 times a second).
// Any other channel echoes.
type room struct {
	name string
	log  *slog.Logger

	mu      sync.Mutex
	players map[*slave.Client]*player
	changed bool // a position moved since the last tick
}

type player struct {
	id   string
	hue  int
	chat *webrtc.DataChannel
	dots *webrtc.DataChannel
	x, y float64
}

func newRoom(name string, log *slog.Logger) *room {
	return &room{name: name, log: log, players: map[*slave.Client]*player{}}
}

// ServeClient implements slave.Handler.
func (r *room) ServeClient(ctx context.Context, c *slave.Client) {
	sess := c.Session()
	p := &player{id: sess[:min(6, len(sess))], hue: int(hash(sess) % 360), x: 0.5, y: 0.5}
	r.mu.Lock()
	r.players[c] = p
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.players, c)
		r.changed = true
		r.mu.Unlock()
		r.broadcastChat("", p.id+" left")
	}()
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		switch dc.Label() {
		case "chat":
			r.mu.Lock()
			p.chat = dc
			r.mu.Unlock()
			dc.OnOpen(func() { r.broadcastChat("", p.id+" joined "+r.name) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if len(m.Data) == 0 || len(m.Data) > maxChatMessage {
					return
				}
				r.broadcastChat(p.id, string(m.Data))
			})
		case "dots":
			r.mu.Lock()
			p.dots = dc
			r.mu.Unlock()
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				var pos struct{ X, Y float64 }
				if len(m.Data) > 100 || json.Unmarshal(m.Data, &pos) != nil || !unit(pos.X) || !unit(pos.Y) {
					return
				}
				r.mu.Lock()
				p.x, p.y, r.changed = pos.X, pos.Y, true
				r.mu.Unlock()
			})
		default:
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if m.IsString {
					_ = dc.SendText(string(m.Data))
				} else {
					_ = dc.Send(m.Data)
				}
			})
		}
	})
	select {
	case <-ctx.Done():
	case <-c.Stopping(): // the demo shuts down: let the player go
		r.broadcastChat("", r.name+" is shutting down")
	}
}

// run broadcasts the dots until ctx ends.
func (r *room) run(ctx context.Context) {
	t := time.NewTicker(demoTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		if !r.changed {
			r.mu.Unlock()
			continue
		}
		r.changed = false
		type dot struct {
			ID  string  `json:"id"`
			X   float64 `json:"x"`
			Y   float64 `json:"y"`
			Hue int     `json:"hue"`
		}
		dots := make([]dot, 0, len(r.players))
		var chans []*webrtc.DataChannel
		for _, p := range r.players {
			dots = append(dots, dot{p.id, p.x, p.y, p.hue})
			if p.dots != nil {
				chans = append(chans, p.dots)
			}
		}
		r.mu.Unlock()
		msg, _ := json.Marshal(map[string]any{"dots": dots})
		for _, dc := range chans {
			_ = dc.SendText(string(msg)) // lost or failed sends are the point of an unreliable channel
		}
	}
}

func (r *room) broadcastChat(from, text string) {
	msg, _ := json.Marshal(map[string]string{"from": from, "text": text})
	r.mu.Lock()
	var chans []*webrtc.DataChannel
	for _, p := range r.players {
		if p.chat != nil {
			chans = append(chans, p.chat)
		}
	}
	r.mu.Unlock()
	for _, dc := range chans {
		if dc.ReadyState() == webrtc.DataChannelStateOpen {
			_ = dc.SendText(string(msg))
		}
	}
}

func unit(v float64) bool { return v >= 0 && v <= 1 && !math.IsNaN(v) }

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}
