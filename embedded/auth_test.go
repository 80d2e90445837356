package embedded

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// authRecorder is an AuthFunc that allows slave1/secret and remembers what
// it was asked.
type authRecorder struct {
	mu   sync.Mutex
	seen []Credentials
}

func (r *authRecorder) auth(c Credentials) error {
	r.mu.Lock()
	r.seen = append(r.seen, c)
	r.mu.Unlock()
	switch {
	case c.User == "panic":
		panic("boom")
	case c.User == "" && c.Token == "":
		return errors.New("no credentials")
	case c.User != "slave1" || c.Password != "secret":
		return errors.New("wrong user or password")
	}
	return nil
}

func (r *authRecorder) calls() []Credentials {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Credentials(nil), r.seen...)
}

func TestAuth(t *testing.T) {
	rec := &authRecorder{}
	logger, logs := newLogBuffer(slog.LevelInfo)
	s := startServer(t, Config{Auth: rec.auth, Logger: logger})

	t.Run("allowed", func(t *testing.T) {
		nc := connectURL(t, s.ClientURL(), nats.UserInfo("slave1", "secret"), nats.Name("slave-one"))
		kvRoundTrip(t, nc, "auth")

		calls := rec.calls()
		if len(calls) == 0 {
			t.Fatal("AuthFunc not called")
		}
		c := calls[len(calls)-1]
		if c.User != "slave1" || c.Password != "secret" || c.Name != "slave-one" || c.Token != "" {
			t.Errorf("AuthFunc got %+v, want user slave1, password secret, name slave-one, no token", c)
		}
		local := nc.LocalAddr() // nats.go 1.55: the client's side of the socket
		if got, ok := c.RemoteAddr.(*net.TCPAddr); !ok || got.String() != local {
			t.Errorf("AuthFunc RemoteAddr = %v, want the client's address %s", c.RemoteAddr, local)
		}
	})

	refused := []struct {
		name string
		opts []nats.Option
	}{
		{"wrong password", []nats.Option{nats.UserInfo("slave1", "nope")}},
		{"unknown user", []nats.Option{nats.UserInfo("slave2", "secret")}},
		{"no credentials", nil},
		{"token", []nats.Option{nats.Token("guess")}},
		{"auth func panics", []nats.Option{nats.UserInfo("panic", "x")}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(s.ClientURL(), tt.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected, want refused")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("nats.Connect error %v, want nats.ErrAuthorization", err)
			}
		})
	}

	t.Run("in-process Connect", func(t *testing.T) {
		before := len(rec.calls())
		nc := connectInProcess(t, s)
		kvRoundTrip(t, nc, "internal")
		if got := len(rec.calls()); got != before {
			t.Errorf("AuthFunc called %d times for Connect, want 0", got-before)
		}
	})

	t.Run("other in-process connection", func(t *testing.T) {
		// An in-process connection not made by Server.Connect goes
		// through the AuthFunc like any client. (It is tested allowed:
		// nats-server refusing a net.Pipe client blocks 10 s on its
		// write deadline, an upstream quirk.)
		nc := connectURL(t, "", nats.InProcessServer(s.NATSServer()), nats.UserInfo("slave1", "secret"))
		kvRoundTrip(t, nc, "pipe")
		calls := rec.calls()
		if a := calls[len(calls)-1].RemoteAddr; a == nil || a.Network() != "pipe" {
			t.Errorf("RemoteAddr %v, want a pipe address", a)
		}
	})

	for _, c := range rec.calls() {
		if c.Token == s.token {
			t.Errorf("AuthFunc saw the internal token: %+v", c)
		}
	}

	var reasons []string
	for _, r := range logs.records(t) {
		if r["msg"] == "client refused" {
			if r["level"] != "INFO" || r[keyComponent] != componentEmbedded {
				t.Errorf("refusal logged as %v, want level INFO, component embedded", r)
			}
			reasons = append(reasons, r[keyReason].(string))
		}
	}
	if len(reasons) != len(refused) {
		t.Errorf("refusals logged: %q, want %d", reasons, len(refused))
	}
	if !slices.Contains(reasons, "wrong user or password") || !slices.Contains(reasons, "no credentials") {
		t.Errorf("refusal reasons %q miss the AuthFunc's error text", reasons)
	}
}

// TestUsers checks Config.Users: the right password connects with the user's
// permissions, a wrong one or an unknown user is refused, Connect still works.
func TestUsers(t *testing.T) {
	s := startServer(t, Config{Users: []User{
		{Name: "limited", Password: "pw", Permissions: &Permissions{Publish: []string{"ok.>"}, Subscribe: []string{"_INBOX.>"}}},
		{Name: "free", Password: "pw2"},
	}})
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"limited", "pw", true},
		{"free", "pw2", true},
		{"limited", "nope", false},
		{"stranger", "pw", false},
		{"", "", false},
	} {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(tc.user, tc.pw), nats.MaxReconnects(0))
		if tc.ok != (err == nil) {
			t.Errorf("user %q password %q: err %v, want ok=%v", tc.user, tc.pw, err, tc.ok)
		}
		if nc != nil {
			nc.Close()
		}
	}
	denied := make(chan error, 1)
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("limited", "pw"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case denied <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.Publish("forbidden", nil)
	_ = nc.Flush()
	select {
	case err := <-denied:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("got %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("publish outside the user's permissions was not refused")
	}
	in, err := s.Connect()
	if err != nil {
		t.Fatal("Connect with Users set:", err)
	}
	in.Close()
	if _, err := Start(t.Context(), Config{Users: []User{{Name: "x"}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("user without password: %v, want ErrInvalidConfig", err)
	}
}
