package bus

import (
	"crypto/rand"
	"fmt"
)

// MaxIDLen is the longest ID the contract accepts.
const MaxIDLen = 64

// ValidateID returns nil when id matches ^[A-Za-z0-9_-]{1,64}$ and an error
// matching [ErrInvalidID] otherwise. Such an ID is safe as one NATS subject
// token and as a key of the presence bucket.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidID, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("%w: %.64q has a character other than A-Z a-z 0-9 _ -", ErrInvalidID, id)
		}
	}
	return nil
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewID returns a random ID of 16 alphanumeric characters (about 95 bits of
// entropy), valid for [ValidateID].
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b[:])
}
