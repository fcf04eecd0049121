package queue

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"

	"github.com/nats-io/nats-server/v2/server"
)

// tokenAuth authenticates the embedded NATS server's clients by token and
// gives each token its own permissions: the bridge's own connection (a random
// token made at start, never leaving the process) may do anything; remote
// workers (SEGBRIDGE_NATS_TOKEN) get WorkerPermissions.
type tokenAuth struct {
	bridge string
	worker string
}

var _ server.Authentication = (*tokenAuth)(nil)

func (a *tokenAuth) Check(c server.ClientAuthentication) bool {
	got := []byte(c.GetOpts().Token)
	switch {
	case a.bridge != "" && subtle.ConstantTimeCompare(got, []byte(a.bridge)) == 1:
		c.RegisterUser(&server.User{Username: "segbridge-bridge", Permissions: BridgePermissions()})
		return true
	case a.worker != "" && subtle.ConstantTimeCompare(got, []byte(a.worker)) == 1:
		c.RegisterUser(&server.User{Username: "segbridge-worker", Permissions: WorkerPermissions()})
		return true
	}
	return false
}

// BridgePermissions let the bridge do anything in its account except read
// the workers' inboxes, which it never needs. Give an external NATS server's
// bridge user the same.
func BridgePermissions() *server.Permissions {
	return &server.Permissions{
		Subscribe: &server.SubjectPermission{Deny: []string{WorkerInboxPrefix + ".>"}},
	}
}

// WorkerPermissions are all a `segbridge worker` may do: find the job stream
// and its consumer, pull job messages into its own inbox, and ask the bridge
// for transitions (RPCSubject). It cannot publish jobs, acknowledge messages
// itself, read or write the status and cursor buckets, create, purge or
// delete streams, or read the bridge's replies. Give an external NATS
// server's worker user the same subjects, with the worker's inbox prefix
// (WorkerInboxPrefix) as its only subscription.
func WorkerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + StreamName,
			"$JS.API.CONSUMER.INFO." + StreamName + "." + ConsumerName,
			"$JS.API.CONSUMER.MSG.NEXT." + StreamName + "." + ConsumerName,
			RPCSubject + ".*",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{WorkerInboxPrefix + ".>"}},
	}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
