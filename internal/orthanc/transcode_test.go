package orthanc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/volume"
)

// part10 returns a minimal Part-10 file with transfer syntax ts.
func part10(ts string) []byte {
	b := make([]byte, 128)
	b = append(b, "DICM"...)
	val := ts
	if len(val)%2 == 1 {
		val += "\x00"
	}
	el := []byte{0x02, 0x00, 0x10, 0x00, 'U', 'I', byte(len(val)), 0}
	el = append(el, val...)
	b = append(b, 0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0, byte(len(el)), 0, 0, 0)
	return append(b, el...)
}

type fakePACS struct {
	stored    []byte
	transcode func(ts string) ([]byte, error)
	asked     int
}

func (f *fakePACS) InstanceFile(context.Context, string) ([]byte, error) { return f.stored, nil }

func (f *fakePACS) TranscodeInstance(_ context.Context, _ string, ts string) ([]byte, error) {
	f.asked++
	return f.transcode(ts)
}

func TestUncompressedInstanceFile(t *testing.T) {
	native := part10(ExplicitVRLittleEndian)
	tests := []struct {
		name      string
		stored    []byte
		transcode func(string) ([]byte, error)
		wantAsked int
		wantErr   error
		wantMsg   string
	}{
		{name: "explicit LE is used as stored", stored: native},
		{name: "implicit LE is used as stored", stored: part10("1.2.840.10008.1.2")},
		{name: "not DICOM is left to the parser", stored: []byte("garbage")},
		{name: "JPEG-LS lossless is transcoded", stored: part10("1.2.840.10008.1.2.4.80"),
			transcode: func(string) ([]byte, error) { return native, nil }, wantAsked: 1},
		{name: "JPEG-LS near-lossless is transcoded", stored: part10("1.2.840.10008.1.2.4.81"),
			transcode: func(string) ([]byte, error) { return native, nil }, wantAsked: 1},
		// What can crash Orthanc, or what segbridge decodes itself, is
		// never asked for: the stored bytes go to the parser.
		{name: "JPEG 2000 lossy is never sent to Orthanc", stored: part10("1.2.840.10008.1.2.4.91")},
		{name: "JPEG 2000 lossless is never sent to Orthanc", stored: part10("1.2.840.10008.1.2.4.90")},
		{name: "HTJ2K is never sent to Orthanc", stored: part10("1.2.840.10008.1.2.4.201")},
		{name: "JPEG 2000 Part 2 is never sent to Orthanc", stored: part10("1.2.840.10008.1.2.4.92")},
		{name: "RLE is decoded here", stored: part10("1.2.840.10008.1.2.5")},
		{name: "JPEG lossless is decoded here", stored: part10("1.2.840.10008.1.2.4.70")},
		{name: "JPEG baseline is decoded here", stored: part10("1.2.840.10008.1.2.4.50")},
		{name: "JPEG extended is decoded here", stored: part10("1.2.840.10008.1.2.4.51")},
		{name: "deflate is decoded here", stored: part10("1.2.840.10008.1.2.1.99")},
		{name: "an unknown syntax is never sent to Orthanc", stored: part10("1.2.826.0.1.3680043.99")},
		{name: "Orthanc refusing a JPEG-LS file is a permanent reason", stored: part10("1.2.840.10008.1.2.4.80"),
			transcode: func(string) ([]byte, error) {
				return nil, &HTTPError{Method: "POST", Path: "/x", StatusCode: http.StatusInternalServerError,
					Message: "Internal error (Cannot transcode to transfer syntax: 1.2.840.10008.1.2.1)"}
			},
			wantAsked: 1, wantErr: volume.ErrInvalidSeries, wantMsg: "Orthanc could not transcode it"},
		{name: "Orthanc down is not permanent", stored: part10("1.2.840.10008.1.2.4.80"),
			transcode: func(string) ([]byte, error) {
				return nil, &HTTPError{Method: "POST", Path: "/x", StatusCode: http.StatusServiceUnavailable}
			},
			wantAsked: 1, wantErr: errors.New("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakePACS{stored: tt.stored, transcode: tt.transcode}
			got, err := UncompressedInstanceFile(context.Background(), p, "id")
			if p.asked != tt.wantAsked {
				t.Errorf("asked Orthanc to transcode %d times, want %d", p.asked, tt.wantAsked)
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr == volume.ErrInvalidSeries && (!errors.Is(err, volume.ErrInvalidSeries) || !errors.Is(err, ErrCannotTranscode)):
				t.Fatalf("error %v, want ErrInvalidSeries and ErrCannotTranscode", err)
			case tt.wantErr != nil && tt.wantErr != volume.ErrInvalidSeries && (err == nil || errors.Is(err, volume.ErrInvalidSeries)):
				t.Fatalf("error %v, want a transient error", err)
			}
			if tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Errorf("error %v does not say %q", err, tt.wantMsg)
			}
			if tt.wantErr == nil && got == nil {
				t.Error("no bytes")
			}
		})
	}
}

func TestUncompressedInstanceFile_GDCMGuard(t *testing.T) {
	jpeg := part10("1.2.840.10008.1.2.4.81") // JPEG-LS, the family Orthanc still transcodes
	native := part10(ExplicitVRLittleEndian)
	tests := []struct {
		name        string
		plugins     string
		restricted  bool
		stored      []byte
		wantModify  bool
		wantUnsafe  bool
		wantPlugins bool
	}{
		{name: "no plugin: Orthanc's own codec transcodes", plugins: `[]`, stored: jpeg, wantModify: true, wantPlugins: true},
		{name: "GDCM loaded: nothing is asked", plugins: `["gdcm","dicom-web"]`, stored: jpeg, wantUnsafe: true, wantPlugins: true},
		{name: "GDCM restricted by the operator", plugins: `["gdcm"]`, restricted: true, stored: jpeg, wantModify: true},
		{name: "JPEG 2000 with GDCM loaded: never asked, not even the plugins", plugins: `["gdcm"]`,
			stored: part10("1.2.840.10008.1.2.4.91")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			asked := map[string]int{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				asked[r.URL.Path]++
				mu.Unlock()
				switch {
				case r.URL.Path == "/plugins":
					_, _ = w.Write([]byte(tt.plugins))
				case strings.HasSuffix(r.URL.Path, "/file"):
					_, _ = w.Write(tt.stored)
				case strings.HasSuffix(r.URL.Path, "/modify"):
					_, _ = w.Write(native)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			c, err := NewClient(zerolog.Nop(), Config{URL: srv.URL, GDCMRestricted: tt.restricted})
			if err != nil {
				t.Fatal(err)
			}
			id := "6b9e19d9-62094390-5f9ddb01-4a191ae7-9766b715"
			for range 2 { // the second call uses the cached plugin list
				_, err = UncompressedInstanceFile(context.Background(), c, id)
			}
			var ue *UnsafeTranscodeError
			switch {
			case tt.wantUnsafe && (!errors.As(err, &ue) || !errors.Is(err, volume.ErrInvalidSeries) ||
				!strings.Contains(err.Error(), "SEGBRIDGE_ORTHANC_GDCM_RESTRICTED=true") || !strings.Contains(err.Error(), id)):
				t.Fatalf("error %v, want an UnsafeTranscodeError naming the instance and the fix", err)
			case !tt.wantUnsafe && err != nil:
				t.Fatalf("error %v", err)
			}
			if got := asked["/instances/"+id+"/modify"] > 0; got != tt.wantModify {
				t.Errorf("asked Orthanc to transcode: %v, want %v", got, tt.wantModify)
			}
			if got := asked["/plugins"]; (got > 0) != tt.wantPlugins || got > 1 {
				t.Errorf("asked for the plugins %d times, want %v (once, then cached)", got, tt.wantPlugins)
			}
		})
	}
}
