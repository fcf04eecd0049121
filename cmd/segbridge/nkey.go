package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nkeys"
)

// nkeyCmd makes a NATS user key for a bridge or a worker of a NATS cluster:
// the seed (the secret) goes into a new file of mode 0600 that only that
// machine keeps (SEGBRIDGE_NATS_NKEY_SEED), and the public key is printed
// for the cluster's configuration. The servers never hold a secret of
// segbridge's.
func nkeyCmd(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		return errors.New("usage: segbridge nkey SEED_FILE (writes a new NATS user seed there and prints its public key)")
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("nkey: %w", err)
	}
	// O_EXCL: an existing seed is somebody's identity; never overwrite it.
	f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("nkey: %w", err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("nkey: write %s: %w", args[0], err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("nkey: write %s: %w", args[0], err)
	}
	fmt.Fprintln(stdout, pub)
	return nil
}
