package orthanc

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Labels arrived in Orthanc 1.12.0: a resource carries names that Orthanc
// Explorer 2 and /tools/find filter on, which makes them the way to show a
// worklist which studies an AI job is done or failed on. Older versions
// (Debian 12 ships 1.10.1) answer 404 to the labels routes; there, metadata
// is the record.

// labelSupport caches whether Orthanc has labels; it changes only when
// Orthanc is upgraded, so the answer is kept for a while.
type labelSupport struct {
	mu        sync.Mutex
	supported bool
	at        time.Time
}

const labelSupportTTL = 10 * time.Minute

// SupportsLabels reports whether the Orthanc has labels (version 1.12.0 or
// later, or a mainline build).
func (c *Client) SupportsLabels(ctx context.Context) (bool, error) {
	c.labels.mu.Lock()
	defer c.labels.mu.Unlock()
	if !c.labels.at.IsZero() && time.Since(c.labels.at) < labelSupportTTL {
		return c.labels.supported, nil
	}
	sys, err := c.System(ctx)
	if err != nil {
		return false, err
	}
	c.labels.supported, c.labels.at = VersionAtLeast(sys.Version, 1, 12), time.Now()
	return c.labels.supported, nil
}

// VersionAtLeast reports whether an Orthanc version string ("1.10.1",
// "mainline") is at least major.minor; a mainline build is newer than any
// release.
func VersionAtLeast(version string, major, minor int) bool {
	if strings.EqualFold(strings.TrimSpace(version), "mainline") {
		return true
	}
	parts := strings.SplitN(strings.TrimSpace(version), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// SetLabel adds (on) or removes a label of a resource at level ("series",
// "studies"). Removing a label the resource does not have is not an error.
func (c *Client) SetLabel(ctx context.Context, level, id, label string, on bool) error {
	method := http.MethodPut
	if !on {
		method = http.MethodDelete
	}
	_, err := c.do(ctx, method, "/"+level+"/"+id+"/labels/"+label, []byte{}, nil)
	return err
}
