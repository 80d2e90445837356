package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/enslavism/enslavism/bus"
)

var invalidIDs = []struct {
	name, id string
}{
	{"dot", "a.b"},
	{"star", "*"},
	{"gt", ">"},
	{"empty", ""},
	{"65 chars", strings.Repeat("a", 65)},
	{"space", "a b"},
	{"leading space", " a"},
	{"unicode", "é"},
	{"emoji", "slave🙂"},
	{"tab", "a\tb"},
	{"newline", "a\nb"},
	{"slash", "a/b"},
	{"nul", "a\x00b"},
	{"dollar", "$JS"},
}

func TestValidateID(t *testing.T) {
	for _, tc := range invalidIDs {
		t.Run(tc.name, func(t *testing.T) {
			if err := bus.ValidateID(tc.id); !errors.Is(err, bus.ErrInvalidID) {
				t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", tc.id, err)
			}
		})
	}
	for _, id := range []string{"a", "A-z_09", strings.Repeat("x", 64), bus.NewID()} {
		if err := bus.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := bus.NewID()
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

// TestBuildersRefuseInvalidIDs checks that every builder refuses every invalid
// ID in every position before building a subject.
func TestBuildersRefuseInvalidIDs(t *testing.T) {
	var s bus.Subjects
	builders := map[string]func(bad string) (string, error){
		"SlaveOffer":             func(b string) (string, error) { return s.SlaveOffer(b) },
		"SlaveWildcard":          func(b string) (string, error) { return s.SlaveWildcard(b) },
		"GatewayWildcard":        func(b string) (string, error) { return s.GatewayWildcard(b) },
		"SlaveICE/slave":         func(b string) (string, error) { return s.SlaveICE(b, "sess") },
		"SlaveICE/session":       func(b string) (string, error) { return s.SlaveICE("slave", b) },
		"SlaveCancel/slave":      func(b string) (string, error) { return s.SlaveCancel(b, "sess") },
		"SlaveCancel/session":    func(b string) (string, error) { return s.SlaveCancel("slave", b) },
		"GatewayICE/gateway":     func(b string) (string, error) { return s.GatewayICE(b, "sess") },
		"GatewayICE/session":     func(b string) (string, error) { return s.GatewayICE("gw", b) },
		"prefix/SlaveOffer":      func(b string) (string, error) { return bus.Subjects{Prefix: b}.SlaveOffer("ok") },
		"prefix/GatewayWildcard": func(b string) (string, error) { return bus.Subjects{Prefix: b}.GatewayWildcard("ok") },
	}
	for name, build := range builders {
		for _, tc := range invalidIDs {
			if name[:6] == "prefix" && tc.id == "" {
				continue // an empty prefix means the default
			}
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				subj, err := build(tc.id)
				if !errors.Is(err, bus.ErrInvalidID) {
					t.Errorf("err = %v, want ErrInvalidID", err)
				}
				if subj != "" {
					t.Errorf("built %q despite the invalid id", subj)
				}
			})
		}
	}
	if _, err := bus.NewSubjects("a.b"); !errors.Is(err, bus.ErrInvalidID) {
		t.Errorf("NewSubjects(a.b) = %v, want ErrInvalidID", err)
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		got    func(bus.Subjects) (string, error)
		want   string
	}{
		{"", func(s bus.Subjects) (string, error) { return s.SlaveOffer("s1") }, "enslavism.slave.s1.offer"},
		{"", func(s bus.Subjects) (string, error) { return s.SlaveICE("s1", "k") }, "enslavism.slave.s1.session.k.ice"},
		{"", func(s bus.Subjects) (string, error) { return s.SlaveCancel("s1", "k") }, "enslavism.slave.s1.session.k.cancel"},
		{"", func(s bus.Subjects) (string, error) { return s.GatewayICE("g1", "k") }, "enslavism.gateway.g1.session.k.ice"},
		{"", func(s bus.Subjects) (string, error) { return s.SlaveWildcard("s1") }, "enslavism.slave.s1.>"},
		{"", func(s bus.Subjects) (string, error) { return s.GatewayWildcard("g1") }, "enslavism.gateway.g1.>"},
		{"prod", func(s bus.Subjects) (string, error) { return s.SlaveOffer("s1") }, "prod.slave.s1.offer"},
	} {
		got, err := tc.got(bus.Subjects{Prefix: tc.prefix})
		if err != nil || got != tc.want {
			t.Errorf("got %q, %v; want %q", got, err, tc.want)
		}
	}
	if got, want := (bus.Subjects{Prefix: "prod"}).Bucket(), "prod-slaves"; got != want {
		t.Errorf("Bucket() = %q, want %q", got, want)
	}
}

func TestParseSubjects(t *testing.T) {
	var s bus.Subjects
	for _, tc := range []struct {
		subject string
		slave   string
		kind    bus.Kind
		session string
		err     error
	}{
		{"enslavism.slave.s1.offer", "s1", bus.KindOffer, "", nil},
		{"enslavism.slave.s1.session.k9.ice", "s1", bus.KindICE, "k9", nil},
		{"enslavism.slave.s1.session.k9.cancel", "s1", bus.KindCancel, "k9", nil},
		{"enslavism.slave.s1.session.k9.other", "", 0, "", bus.ErrNotSubject},
		{"enslavism.slave.s1.session.k9", "", 0, "", bus.ErrNotSubject},
		{"enslavism.slave.s1.offer.x", "", 0, "", bus.ErrNotSubject},
		{"other.slave.s1.offer", "", 0, "", bus.ErrNotSubject},
		{"enslavism.gateway.s1.offer", "", 0, "", bus.ErrNotSubject},
		{"enslavism.slave.s$1.offer", "", 0, "", bus.ErrInvalidID},
		{"enslavism.slave.s1.session.k$.ice", "", 0, "", bus.ErrInvalidID},
	} {
		slave, kind, session, err := s.ParseSlaveSubject(tc.subject)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%s: err %v, want %v", tc.subject, err, tc.err)
			continue
		}
		if slave != tc.slave || kind != tc.kind || session != tc.session {
			t.Errorf("%s: got %q %v %q, want %q %v %q", tc.subject, slave, kind, session, tc.slave, tc.kind, tc.session)
		}
	}
	gw, session, err := s.ParseGatewaySubject("enslavism.gateway.g1.session.k1.ice")
	if err != nil || gw != "g1" || session != "k1" {
		t.Errorf("ParseGatewaySubject: %q %q %v", gw, session, err)
	}
	for _, bad := range []string{"enslavism.gateway.g1.session.k1.cancel", "enslavism.gateway.g1", "enslavism.slave.g1.session.k1.ice", "enslavism.gateway.g.1.session.k1.ice"} {
		if _, _, err := s.ParseGatewaySubject(bad); err == nil {
			t.Errorf("ParseGatewaySubject(%q) accepted", bad)
		}
	}
}
