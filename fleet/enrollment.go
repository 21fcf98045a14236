package fleet

import "time"

// EnrollState is where a device stands with the broker.
type EnrollState string

// The enrollment states: pending waits for an operator (with
// --approve-devices), approved devices get credentials, revoked ones are
// refused by the broker. Deleted is an operator's deletion on its way: the
// enrollment service revokes the key at the broker, then removes the
// enrollment, so the id is free for a new key.
const (
	EnrollPending  EnrollState = "pending"
	EnrollApproved EnrollState = "approved"
	EnrollRevoked  EnrollState = "revoked"
	EnrollDeleted  EnrollState = "deleted"
)

// Enrollment is a device's identity at the broker: the public key its
// credentials were issued for.
type Enrollment struct {
	ID        string      `json:"id"`
	PublicKey string      `json:"public_key"`
	Hostname  string      `json:"hostname,omitempty"`
	State     EnrollState `json:"state"`
	Requested time.Time   `json:"requested"`
	Decided   time.Time   `json:"decided,omitzero"`
}
