package orthanc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

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
		{name: "JPEG lossless is transcoded", stored: part10("1.2.840.10008.1.2.4.70"),
			transcode: func(string) ([]byte, error) { return native, nil }, wantAsked: 1},
		{name: "no codec is a permanent reason", stored: part10("1.2.840.10008.1.2.4.90"),
			transcode: func(string) ([]byte, error) {
				return nil, &HTTPError{Method: "POST", Path: "/x", StatusCode: http.StatusInternalServerError,
					Message: "Internal error (Cannot transcode to transfer syntax: 1.2.840.10008.1.2.1)"}
			},
			wantAsked: 1, wantErr: volume.ErrInvalidSeries, wantMsg: "orthanc-gdcm"},
		{name: "Orthanc down is not permanent", stored: part10("1.2.840.10008.1.2.5"),
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

// FuzzFileTransferSyntax: the meta header of downloaded bytes must never
// panic the reader.
func FuzzFileTransferSyntax(f *testing.F) {
	f.Add(part10(ExplicitVRLittleEndian))
	f.Add(part10("1.2.840.10008.1.2.4.70"))
	f.Add([]byte("DICM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, ok := fileTransferSyntax(data)
		if !ok && ts != "" {
			t.Fatalf("not ok but ts %q", ts)
		}
	})
}
