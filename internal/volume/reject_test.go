package volume

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAssemble_MakeSeriesRejections assembles the broken series that
// makeseries.py writes for the end-to-end rejection tests and checks that
// each is refused, before any volume is allocated, with its own reason.
func TestAssemble_MakeSeriesRejections(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		lim     Limits
		wantErr string
	}{
		{name: "mixed orientations", args: []string{"--defect", "mixed-orientation"}, wantErr: "the series mixes orientations"},
		{name: "two stacks", args: []string{"--defect", "two-stacks"}, wantErr: "slices do not form one stack"},
		{name: "duplicate position", args: []string{"--defect", "duplicate"}, wantErr: "duplicate slices"},
		{name: "uneven gaps", args: []string{"--defect", "gap"}, wantErr: "uneven slice spacing"},
		{name: "4-D echoes", args: []string{"--echoes", "2"}, wantErr: "4-D series: instances"},
		{name: "4-D echoes differ in EchoNumbers", args: []string{"--echoes", "3"}, wantErr: "differ in EchoNumbers"},
		{name: "over the voxel limit", lim: Limits{MaxVoxels: 1000}, wantErr: "exceeds the limit of 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _, _ := makeSeries(t, append([]string{"--step", "6"}, tt.args...)...)
			_, err := Assemble(parseDir(t, dir), tt.lim)
			if err == nil || !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Assemble error = %v, want ErrInvalidSeries containing %q", err, tt.wantErr)
			}
			t.Logf("reason: %v", err)
		})
	}
	t.Run("non-image objects", func(t *testing.T) {
		dir, _, _ := makeSeries(t, "--step", "6", "--defect", "no-pixels")
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseInstance(data)
		if err == nil || !errors.Is(err, ErrInvalidSeries) || !strings.Contains(err.Error(), "not an image: SOP class") {
			t.Fatalf("ParseInstance error = %v, want a non-image reason", err)
		}
	})
	t.Run("enhanced 4-D by temporal position", func(t *testing.T) {
		a := axialSynth(0)
		b := axialSynth(0)
		b.sop += ".9"
		ia, ib := a.parse(t), b.parse(t)
		ia.TemporalPosition, ib.TemporalPosition = 1, 2
		_, err := Assemble([]*Instance{ia, ib}, Limits{})
		if err == nil || !strings.Contains(err.Error(), "differ in temporal position (1 and 2)") {
			t.Fatalf("Assemble error = %v, want a 4-D reason", err)
		}
	})
}
