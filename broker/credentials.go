package broker

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ServiceCredentials returns the connect option of a service named name
// that runs in a process of its own: a user of the application account
// (or of the system account, with system set), signed with the key that
// the service token derives. Nothing but the token need be handed to it.
func ServiceCredentials(serviceToken, name string, system bool) (nats.Option, error) {
	k, err := deriveKeys(serviceToken)
	if err != nil {
		return nil, fmt.Errorf("service credentials: %w", err)
	}
	account := k.app
	if system {
		account = k.sys
	}
	userJWT, seed, err := userJWT(account, name)
	if err != nil {
		return nil, fmt.Errorf("service credentials: %w", err)
	}
	return nats.UserJWTAndSeed(userJWT, string(seed)), nil
}

// AppAccountKeyOf is the application account's public key for a service
// token: what presence needs to name the broker's events when it runs
// alone.
func AppAccountKeyOf(serviceToken string) (string, error) {
	k, err := deriveKeys(serviceToken)
	if err != nil {
		return "", err
	}
	return pub(k.app), nil
}

// AgentSignerOf returns the scoped key that signs agent users, and the
// application account it signs for, as serviceToken derives them: what
// the enrollment service issues credentials with.
func AgentSignerOf(serviceToken string) (signer nkeys.KeyPair, account string, err error) {
	k, err := deriveKeys(serviceToken)
	if err != nil {
		return nil, "", err
	}
	return k.agentSigner, pub(k.app), nil
}
