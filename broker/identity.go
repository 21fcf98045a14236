package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

// The broker's identities use NATS decentralized JWT auth. The invariants:
//
//   - Every key is derived from the service token, the server side's one
//     root secret: every node of a cluster and every service started alone
//     derives the same keys from it, and nothing else need be shared.
//     Changing the token changes every key (agents enroll again).
//   - The operator key signs the three account JWTs. Accounts are rebuilt
//     at every start; revocations are carried over from the stored account.
//   - The application account's identity key signs the service users.
//     Its agent signing key is scoped: a user it signs may publish only
//     the thinfleet subjects carrying its own name (the device id) and
//     subscribe only to its own offers and inbox. The broker enforces
//     this; no service has to.
//   - The enrollment account's key is derived from the enrollment token
//     (wire.EnrollAccountKey), so an agent holding the token signs its own
//     user in that account, which can do one thing: send an enrollment
//     request, answered with the agent's own credentials.

// keys are the server side's keys.
type keys struct {
	operator, app, sys, agentSigner nkeys.KeyPair
}

// deriveKeys derives every key from the service token.
func deriveKeys(serviceToken string) (keys, error) {
	if serviceToken == "" {
		return keys{}, errors.New("no service token")
	}
	derive := func(label string, prefix nkeys.PrefixByte) (nkeys.KeyPair, error) {
		mac := hmac.New(sha256.New, []byte(serviceToken))
		mac.Write([]byte("thinfleet key v1\x00" + label))
		return nkeys.FromRawSeed(prefix, mac.Sum(nil))
	}
	var k keys
	var err error
	if k.operator, err = derive("operator", nkeys.PrefixByteOperator); err != nil {
		return keys{}, err
	}
	if k.app, err = derive("account thinfleet", nkeys.PrefixByteAccount); err != nil {
		return keys{}, err
	}
	if k.sys, err = derive("account sys", nkeys.PrefixByteAccount); err != nil {
		return keys{}, err
	}
	if k.agentSigner, err = derive("agent signer", nkeys.PrefixByteAccount); err != nil {
		return keys{}, err
	}
	return k, nil
}

func pub(kp nkeys.KeyPair) string {
	p, _ := kp.PublicKey()
	return p
}

// agentTemplate is what every agent user may do, {{name()}} being its
// device id.
func agentTemplate() jwt.UserPermissionLimits {
	const id = "{{name()}}"
	s := jwt.NewUserScope().Template
	s.Pub.Allow = jwt.StringList{
		wire.HWReportSubject(id), wire.VersionInstalledSubject(id),
		wire.HeartbeatSubject(id), wire.StatusSubject(id),
	}
	s.Sub.Allow = jwt.StringList{wire.OfferSubject(id), wire.AgentInboxPrefix(id) + ".>"}
	s.Payload = wire.MaxMessageSize
	return s
}

func operatorJWT(k keys) (string, error) {
	oc := jwt.NewOperatorClaims(pub(k.operator))
	oc.Name = "thinfleet"
	oc.SystemAccount = pub(k.sys)
	return oc.Encode(k.operator)
}

// appAccountJWT is the application account, keeping the revocations of
// the previous one.
func appAccountJWT(k keys, revocations jwt.RevocationList) (string, error) {
	ac := jwt.NewAccountClaims(pub(k.app))
	ac.Name = AppAccount
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
	scope := jwt.NewUserScope()
	scope.Key = pub(k.agentSigner)
	scope.Role = "agent"
	scope.Template = agentTemplate()
	ac.SigningKeys.AddScopedSigner(scope)
	ac.Exports.Add(&jwt.Export{Name: "enroll", Subject: jwt.Subject(wire.AllEnrollRequests), Type: jwt.Service, ResponseType: jwt.ResponseTypeSingleton})
	ac.Revocations = revocations
	return ac.Encode(k.operator)
}

func sysAccountJWT(k keys) (string, error) {
	ac := jwt.NewAccountClaims(pub(k.sys))
	ac.Name = SystemAccount
	return ac.Encode(k.operator)
}

// enrollAccountJWT is the account agents enroll through: no JetStream, a
// few connections, small messages, and the enrollment service imported.
func enrollAccountJWT(k keys, enroll nkeys.KeyPair) (string, error) {
	ac := jwt.NewAccountClaims(pub(enroll))
	ac.Name = "ENROLL"
	ac.Limits.Conn = 1000
	ac.Limits.Payload = 4 << 10
	ac.Limits.Subs = 2000
	ac.Imports.Add(&jwt.Import{Name: "enroll", Subject: jwt.Subject(wire.AllEnrollRequests), Account: pub(k.app), Type: jwt.Service})
	return ac.Encode(k.operator)
}

// userJWT issues a user of account (signed by its identity key) with full
// rights, for the services.
func userJWT(account nkeys.KeyPair, name string) (jwtStr string, seed []byte, err error) {
	u, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	uc := jwt.NewUserClaims(pub(u))
	// "service:" is no device id, so the broker's events for a service's
	// connection are never taken for a device's.
	uc.Name = "service:" + name
	jwtStr, err = uc.Encode(account)
	if err != nil {
		return "", nil, err
	}
	seed, _ = u.Seed()
	return jwtStr, seed, nil
}

// AgentJWT issues device id's user for its public key userKey, signed by
// the scoped agent signing key of the application account appKey.
func AgentJWT(signer nkeys.KeyPair, appKey, id, userKey string) (string, error) {
	if err := wire.ValidateID(id); err != nil {
		return "", err
	}
	if !nkeys.IsValidPublicUserKey(userKey) {
		return "", errors.New("not a NATS user public key")
	}
	uc := jwt.NewUserClaims(userKey)
	// A scoped signer's users carry no permissions or limits of their
	// own: the scope's template gives them.
	uc.UserPermissionLimits = jwt.UserPermissionLimits{}
	uc.Name = id
	uc.IssuerAccount = appKey
	uc.IssuedAt = time.Now().Unix()
	return uc.Encode(signer)
}
