package dicomseg

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
)

// implementationClassUID identifies segbridge's DICOM writer in the file meta
// information. It was derived once from a random UUID (PS3.5 B.2), so it needs
// no organisational root.
const implementationClassUID = "2.25.122809706429174746811402831832824106871"

// implementationVersionName goes with implementationClassUID (SH, at most 16 chars).
const implementationVersionName = "SEGBRIDGE_1"

// NewUID returns a new UID under the 2.25 root made from a random (version 4)
// UUID, as PS3.5 B.2 allows; it needs no registered organisational root.
func NewUID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (it aborts the program instead).
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}

// DerivedUIDs returns a NewUID function that yields, in turn, UIDs derived
// from seed: 2.25 UIDs from a SHA-256 of the seed and a counter (a
// name-based, version 8 UUID, as PS3.5 B.2 allows). The same seed gives the
// same UIDs, so a job that stored its result and died before saying so
// stores the same instance again — Orthanc answers AlreadyStored, and there
// is still one result.
func DerivedUIDs(seed string) func() string {
	n := 0
	return func() string {
		n++
		h := sha256.Sum256([]byte(fmt.Sprintf("segbridge\x00%s\x00%d", seed, n)))
		b := h[:16]
		b[6] = b[6]&0x0f | 0x80 // version 8 (name-based, custom hash)
		b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
		return "2.25." + new(big.Int).SetBytes(b).String()
	}
}
