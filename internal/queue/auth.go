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
// workers (SEGBRIDGE_NATS_TOKEN) may only take jobs, ack them and write
// their status — they cannot create, purge or delete streams, read other
// buckets, or publish jobs.
type tokenAuth struct {
	bridge string
	worker string
}

var _ server.Authentication = (*tokenAuth)(nil)

func (a *tokenAuth) Check(c server.ClientAuthentication) bool {
	got := []byte(c.GetOpts().Token)
	switch {
	case a.bridge != "" && subtle.ConstantTimeCompare(got, []byte(a.bridge)) == 1:
		c.RegisterUser(&server.User{Username: "segbridge-bridge"})
		return true
	case a.worker != "" && subtle.ConstantTimeCompare(got, []byte(a.worker)) == 1:
		c.RegisterUser(&server.User{Username: "segbridge-worker", Permissions: WorkerPermissions()})
		return true
	}
	return false
}

// WorkerPermissions are the NATS subjects a `segbridge worker` needs: look up
// the job stream, its consumer and the status bucket; pull, ack, nak and
// extend job messages; read and write job statuses. Use them for the worker
// user of an external NATS server too.
func WorkerPermissions() *server.Permissions {
	kvStream := "KV_" + StatusBucket
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + StreamName,
			"$JS.API.STREAM.INFO." + kvStream,
			"$JS.API.CONSUMER.INFO." + StreamName + "." + ConsumerName,
			"$JS.API.CONSUMER.MSG.NEXT." + StreamName + "." + ConsumerName,
			"$JS.ACK." + StreamName + "." + ConsumerName + ".>",
			"$JS.API.DIRECT.GET." + kvStream + ".>",
			"$JS.API.STREAM.MSG.GET." + kvStream,
			"$KV." + StatusBucket + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
