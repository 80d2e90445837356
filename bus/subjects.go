package bus

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the first token of every subject and of the bucket name
// when no prefix is configured.
const DefaultPrefix = "enslavism"

// Subjects builds and parses the subjects of the contract under one prefix.
// The zero value uses [DefaultPrefix]. Subjects is a small value, safe to
// copy and to use from many goroutines.
//
// Every builder validates each ID it puts into a subject and returns an error
// matching [ErrInvalidID] before any subject is built.
type Subjects struct {
	// Prefix is the first subject token and the bucket name's stem; it must
	// itself be a valid ID. Empty means DefaultPrefix.
	Prefix string
}

// NewSubjects returns Subjects for prefix ("" means DefaultPrefix), or an
// error matching ErrInvalidID when prefix is not a valid ID.
func NewSubjects(prefix string) (Subjects, error) {
	s := Subjects{Prefix: prefix}
	if err := ValidateID(s.prefix()); err != nil {
		return Subjects{}, fmt.Errorf("prefix: %w", err)
	}
	return s, nil
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Bucket returns the name of the presence bucket, "<prefix>-slaves".
func (s Subjects) Bucket() string { return s.prefix() + "-slaves" }

// validate checks the prefix and every named ID.
func (s Subjects) validate(kv ...string) error {
	if err := ValidateID(s.prefix()); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if err := ValidateID(kv[i+1]); err != nil {
			return fmt.Errorf("%s: %w", kv[i], err)
		}
	}
	return nil
}

// SlaveOffer returns "<prefix>.slave.<slaveID>.offer", the request/reply
// subject on which a slave answers offers.
func (s Subjects) SlaveOffer(slaveID string) (string, error) {
	if err := s.validate("slave", slaveID); err != nil {
		return "", err
	}
	return s.prefix() + ".slave." + slaveID + ".offer", nil
}

// SlaveICE returns "<prefix>.slave.<slaveID>.session.<session>.ice", where a
// gateway publishes the browser's ICE candidates for a session.
func (s Subjects) SlaveICE(slaveID, session string) (string, error) {
	if err := s.validate("slave", slaveID, "session", session); err != nil {
		return "", err
	}
	return s.prefix() + ".slave." + slaveID + ".session." + session + ".ice", nil
}

// SlaveCancel returns "<prefix>.slave.<slaveID>.session.<session>.cancel",
// where a gateway tells a slave to drop a session not yet connected.
func (s Subjects) SlaveCancel(slaveID, session string) (string, error) {
	if err := s.validate("slave", slaveID, "session", session); err != nil {
		return "", err
	}
	return s.prefix() + ".slave." + slaveID + ".session." + session + ".cancel", nil
}

// GatewayICE returns "<prefix>.gateway.<gatewayID>.session.<session>.ice",
// where a slave publishes its ICE candidates for a session.
func (s Subjects) GatewayICE(gatewayID, session string) (string, error) {
	if err := s.validate("gateway", gatewayID, "session", session); err != nil {
		return "", err
	}
	return s.prefix() + ".gateway." + gatewayID + ".session." + session + ".ice", nil
}

// SlaveWildcard returns "<prefix>.slave.<slaveID>.>", the one subscription a
// slave holds.
func (s Subjects) SlaveWildcard(slaveID string) (string, error) {
	if err := s.validate("slave", slaveID); err != nil {
		return "", err
	}
	return s.prefix() + ".slave." + slaveID + ".>", nil
}

// GatewayWildcard returns "<prefix>.gateway.<gatewayID>.>", the one
// subscription a gateway holds.
func (s Subjects) GatewayWildcard(gatewayID string) (string, error) {
	if err := s.validate("gateway", gatewayID); err != nil {
		return "", err
	}
	return s.prefix() + ".gateway." + gatewayID + ".>", nil
}

// Kind says what a subject received on a wildcard subscription carries.
type Kind int

// The kinds of subjects a slave or a gateway receives.
const (
	KindOffer  Kind = iota + 1 // an offer request (slave side)
	KindICE                    // an ICE candidate for a session
	KindCancel                 // a cancel for a session (slave side)
)

// String returns "offer", "ice" or "cancel".
func (k Kind) String() string {
	switch k {
	case KindOffer:
		return "offer"
	case KindICE:
		return "ice"
	case KindCancel:
		return "cancel"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseSlaveSubject parses a subject received on [Subjects.SlaveWildcard]:
// it returns the slave ID, the kind and, for ICE and cancel, the session. A
// subject of another shape returns an error matching ErrNotSubject; an
// invalid token one matching ErrInvalidID.
func (s Subjects) ParseSlaveSubject(subject string) (slaveID string, kind Kind, session string, err error) {
	t, err := s.tokens(subject, "slave")
	if err != nil {
		return "", 0, "", err
	}
	switch {
	case len(t) == 2 && t[1] == "offer":
		kind = KindOffer
	case len(t) == 4 && t[1] == "session" && t[3] == "ice":
		kind, session = KindICE, t[2]
	case len(t) == 4 && t[1] == "session" && t[3] == "cancel":
		kind, session = KindCancel, t[2]
	default:
		return "", 0, "", fmt.Errorf("%w: %.200q", ErrNotSubject, subject)
	}
	if err := ValidateID(t[0]); err != nil {
		return "", 0, "", fmt.Errorf("slave: %w", err)
	}
	if kind != KindOffer {
		if err := ValidateID(session); err != nil {
			return "", 0, "", fmt.Errorf("session: %w", err)
		}
	}
	return t[0], kind, session, nil
}

// ParseGatewaySubject parses a subject received on
// [Subjects.GatewayWildcard]: it returns the gateway ID and the session of an
// ICE subject. Any other shape returns an error matching ErrNotSubject.
func (s Subjects) ParseGatewaySubject(subject string) (gatewayID, session string, err error) {
	t, err := s.tokens(subject, "gateway")
	if err != nil {
		return "", "", err
	}
	if len(t) != 4 || t[1] != "session" || t[3] != "ice" {
		return "", "", fmt.Errorf("%w: %.200q", ErrNotSubject, subject)
	}
	if err := s.validate("gateway", t[0], "session", t[2]); err != nil {
		return "", "", err
	}
	return t[0], t[2], nil
}

// tokens strips "<prefix>.<role>." and splits the rest.
func (s Subjects) tokens(subject, role string) ([]string, error) {
	head := s.prefix() + "." + role + "."
	rest, ok := strings.CutPrefix(subject, head)
	if !ok {
		return nil, fmt.Errorf("%w: %.200q does not start with %q", ErrNotSubject, subject, head)
	}
	return strings.Split(rest, "."), nil
}
