package orthanc_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

// makeSeries writes a small MR series from ch2 with the project's generator.
func makeSeries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gen, _ := filepath.Abs("../../testdata/tools/makeseries.py")
	cmd := exec.Command("/usr/bin/python3", gen, "--nifti", "/usr/share/mricron/templates/ch2.nii.gz",
		"--out", dir, "--plane", "axial", "--step", "8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("makeseries (run make deps): %v\n%s", err, out)
	}
	return dir
}

func TestClient_AgainstOrthanc(t *testing.T) {
	srv := orthanctest.Start(t, orthanctest.Options{})
	ctx := context.Background()
	c, err := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: srv.URL, User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatal(err)
	}
	sys, err := c.System(ctx)
	if err != nil || sys.Version == "" {
		t.Fatalf("system: %v %+v", err, sys)
	}

	dir := makeSeries(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	if len(files) == 0 {
		t.Fatal("generator wrote no files")
	}
	var seriesID string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		st, err := c.Store(ctx, b)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		seriesID = st.ParentSeries
	}
	ser, err := c.Series(ctx, seriesID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ser.Instances) != len(files) || ser.Modality() != "MR" {
		t.Fatalf("series has %d instances (want %d), modality %q", len(ser.Instances), len(files), ser.Modality())
	}
	data, err := c.InstanceFile(ctx, ser.Instances[0])
	if err != nil || !bytes.Equal(data[128:132], []byte("DICM")) {
		t.Fatalf("instance file: %v", err)
	}

	t.Run("a recycled file is reused, with the new file's bytes", func(t *testing.T) {
		first, err := c.InstanceFile(ctx, ser.Instances[0])
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(first)
		for i := range first {
			first[i] = 0xee // what a user left in it
		}
		c.Recycle(first)
		again, err := c.InstanceFile(ctx, ser.Instances[0])
		if err != nil {
			t.Fatal(err)
		}
		if &again[0] != &first[0] {
			t.Error("the recycled buffer was not reused")
		}
		if !bytes.Equal(again, want) {
			t.Error("the reused buffer does not hold the file")
		}
	})
	t.Run("image header without the pixels", func(t *testing.T) {
		h, err := c.ImageHeader(ctx, ser.Instances[0])
		if err != nil {
			t.Fatal(err)
		}
		if h.Rows <= 0 || h.Columns <= 0 || h.BitsAllocated != 16 || h.NumberOfFrames != 1 || h.SamplesPerPixel != 1 {
			t.Fatalf("header %+v", h)
		}
	})
	t.Run("unknown series is ErrNotFound", func(t *testing.T) {
		_, err := c.Series(ctx, "00000000-00000000-00000000-00000000-00000000")
		if !errors.Is(err, orthanc.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("wrong password is a 401 that names the fix, not retried", func(t *testing.T) {
		bad, _ := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: srv.URL, User: srv.User, Password: "wrong", RetryDelay: time.Second})
		start := time.Now()
		_, err := bad.System(ctx)
		var he *orthanc.HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %v, want 401", err)
		}
		if time.Since(start) > 900*time.Millisecond {
			t.Fatalf("a 401 was retried (took %s)", time.Since(start))
		}
		if !bytes.Contains([]byte(err.Error()), []byte("ORTHANC_USER")) {
			t.Fatalf("error %q does not say what to check", err)
		}
	})
	t.Run("connection errors are retried until Orthanc is back", func(t *testing.T) {
		srv.Stop()
		go func() { time.Sleep(1500 * time.Millisecond); srv.Restart() }()
		slow, _ := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: srv.URL, User: srv.User, Password: srv.Password,
			Attempts: 30, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 500 * time.Millisecond})
		if _, err := slow.Series(ctx, seriesID); err != nil {
			t.Fatalf("series after restart: %v", err)
		}
	})
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"e22983f4-0423e4a6-0b2ace74-d155cc73-79323ec3", true},
		{"E22983F4-0423e4a6-0b2ace74-d155cc73-79323ec3", false},
		{"e22983f4-0423e4a6-0b2ace74-d155cc73-79323ec", false},
		{"e22983f4_0423e4a6-0b2ace74-d155cc73-79323ec3", false},
		{"../../../etc/passwd", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := orthanc.ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
