// Command game is a small game server built on the slave library: players
// join a room (up to -capacity), the room's player count and state reach
// every browser's server list through userData updates, and the game state
// travels on an unordered, unreliable channel while scores use a reliable one.
//
//	go run ./cmd/enslavism &            # the gateway and NATS
//	go run ./examples/game -name "Room 1"
//
// The game: every player has a counter; the "state" channel broadcasts all
// counters 10 times a second; a player sends "+" on the reliable "score"
// channel to add a point.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/enslavism/enslavism/slave"
	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
)

// info is the room's public userData, shown in every browser's list.
type info struct {
	Name     string `json:"name"`
	Players  int    `json:"players"`
	Capacity int    `json:"capacity"`
	Leader   string `json:"leader,omitempty"`
}

type game struct {
	mu     sync.Mutex
	scores map[string]int
	states map[string]*webrtc.DataChannel
}

func (g *game) ServeClient(ctx context.Context, c *slave.Client) {
	id := c.Session()
	g.mu.Lock()
	g.scores[id] = 0
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.scores, id)
		delete(g.states, id)
		g.mu.Unlock()
	}()
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		switch dc.Label() {
		case "state": // created by the browser with {ordered: false, maxRetransmits: 0}
			g.mu.Lock()
			g.states[id] = dc
			g.mu.Unlock()
		case "score":
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				if string(m.Data) == "+" {
					g.mu.Lock()
					g.scores[id]++
					g.mu.Unlock()
				}
			})
		}
	})
	<-ctx.Done()
}

// broadcast sends the scores on every state channel, and returns the leader.
func (g *game) broadcast() string {
	g.mu.Lock()
	msg, _ := json.Marshal(g.scores)
	leader, best := "", -1
	for id, s := range g.scores {
		if s > best {
			leader, best = id, s
		}
	}
	chans := make([]*webrtc.DataChannel, 0, len(g.states))
	for _, dc := range g.states {
		chans = append(chans, dc)
	}
	g.mu.Unlock()
	for _, dc := range chans {
		_ = dc.SendText(string(msg))
	}
	return leader
}

func main() {
	natsURL := flag.String("nats", nats.DefaultURL, "NATS URL")
	name := flag.String("name", "Game room", "room name shown to players")
	capacity := flag.Int("capacity", 4, "maximum players")
	loopback := flag.Bool("loopback", false, "advertise only 127.0.0.1 (browser on this machine)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := nats.Connect(*natsURL, nats.MaxReconnects(-1))
	if err != nil {
		log.Error("cannot connect to NATS", "url", *natsURL, "err", err)
		os.Exit(1)
	}
	defer nc.Close()
	g := &game{scores: map[string]int{}, states: map[string]*webrtc.DataChannel{}}
	var mu sync.Mutex
	current := info{Name: *name, Capacity: *capacity}
	publish := func(s *slave.Slave, update func(*info)) {
		mu.Lock()
		before := current
		update(&current)
		changed, now := current != before, current
		mu.Unlock()
		if changed {
			uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := s.SetUserData(uctx, now); err != nil {
				log.Warn("userData update failed", "err", err)
			}
		}
	}
	s, err := slave.Start(ctx, nc, slave.Config{
		UserData:   current,
		MaxClients: *capacity,
		Handler:    g,
		OnClientsChange: func(s *slave.Slave, n int) {
			publish(s, func(i *info) { i.Players = n })
		},
		ICE:    slave.ICEConfig{Loopback: *loopback},
		Logger: log,
	})
	if err != nil {
		log.Error("cannot start the slave", "err", err)
		os.Exit(1)
	}
	log.Info("game room listed", "id", s.ID(), "name", *name)

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(sctx); err != nil {
				log.Warn("shutdown", "err", err)
			}
			return
		case <-tick.C:
			leader := g.broadcast()
			publish(s, func(i *info) { i.Leader = leader })
		}
	}
}
