// Package deploy holds no code: it is the folder of segbridge's service
// definitions (systemd/) and of its NATS cluster's configuration (nats/),
// and its tests check them — systemd-analyze verify and security on the
// units, and the cluster configuration against the permissions the queue
// gives workers and bridges.
package deploy
