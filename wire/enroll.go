package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
)

// Enrollment: an agent with the enrollment token but no credentials yet
// signs itself a user of the enrollment account (whose key the token
// derives), sends an EnrollRequest on EnrollSubject(id) and gets back its
// own credentials: a user of the application account that the broker lets
// publish and subscribe only on the subjects of its own id.

const prefixEnroll = "thinfleet.enroll."

// AllEnrollRequests is the subject the enrollment service answers on.
const AllEnrollRequests = prefixEnroll + "*"

// EnrollSubject is where device id asks for its credentials.
func EnrollSubject(id string) string { return prefixEnroll + id }

// EnrollID returns the device id of an enrollment request's subject.
func EnrollID(subject string) (string, error) {
	if len(subject) <= len(prefixEnroll) || subject[:len(prefixEnroll)] != prefixEnroll {
		return "", fmt.Errorf("subject %q: not an enrollment subject", truncate(subject, 100))
	}
	id := subject[len(prefixEnroll):]
	return id, ValidateID(id)
}

// AgentInboxPrefix is the inbox prefix of device id's connection: an agent
// may read the replies addressed to it and no others.
func AgentInboxPrefix(id string) string { return "_INBOX_" + id }

// EnrollAccountKey derives the enrollment account's key from the
// enrollment token. Whoever holds the token can sign a user of that
// account, which can do nothing but ask for enrollment.
func EnrollAccountKey(token string) (nkeys.KeyPair, error) {
	if token == "" {
		return nil, errors.New("no enrollment token")
	}
	sum := sha256.Sum256([]byte("thinfleet enrollment account v1\x00" + token))
	return nkeys.FromRawSeed(nkeys.PrefixByteAccount, sum[:])
}

// EnrollRequest asks for credentials for the agent's own public key; the
// private key never leaves the agent.
type EnrollRequest struct {
	PublicKey string `json:"public_key"`
	Hostname  string `json:"hostname,omitempty"`
}

// Validate implements the check every decoder runs.
func (m EnrollRequest) Validate() error {
	if !nkeys.IsValidPublicUserKey(m.PublicKey) {
		return errors.New("public_key: not a NATS user public key")
	}
	if len(m.Hostname) > 255 {
		return errors.New("hostname: longer than 255 bytes")
	}
	return nil
}

// EnrollStatus is the answer to an enrollment request.
type EnrollStatus string

// The answers: approved comes with the credentials; pending means an
// operator has yet to accept the device (ask again later); refused says
// why in Reason (a revoked device, or an id taken by another key).
const (
	EnrollApproved EnrollStatus = "approved"
	EnrollPending  EnrollStatus = "pending"
	EnrollRefused  EnrollStatus = "refused"
)

// EnrollResponse answers an EnrollRequest.
type EnrollResponse struct {
	Status EnrollStatus `json:"status"`
	// JWT is the agent's user JWT, with Status approved.
	JWT    string `json:"jwt,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Validate implements the check every decoder runs.
func (m EnrollResponse) Validate() error {
	switch m.Status {
	case EnrollApproved:
		if m.JWT == "" || len(m.JWT) > 8<<10 {
			return errors.New("jwt: required with approved, at most 8 KiB")
		}
	case EnrollPending, EnrollRefused:
	default:
		return fmt.Errorf("status: unknown %q", truncate(string(m.Status), 32))
	}
	if len(m.Reason) > MaxDetail {
		return fmt.Errorf("reason: longer than %d bytes", MaxDetail)
	}
	return nil
}
