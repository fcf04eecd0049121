package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/orthanctest"
	"github.com/segbridge/segbridge/internal/volume"
)

// lossyDice is the least Dice a lossy row's SEG must reach against the SEG
// of the uncompressed series. The head-threshold model separates head from
// air on a min-max normalised volume, so lossy coding moves only voxels at
// the edge of the head (measured: 0.9984 to 0.9994).
const lossyDice = 0.99

// TestSyntax_EndToEnd sends one series per transfer syntax a PACS holds
// through a real Orthanc with Debian's orthanc-gdcm plugin loaded in its
// default configuration — the one that kills Orthanc 1.10.1 within a few
// dozen transcodes of JPEG, JPEG-LS or lossy JPEG 2000 — and `segbridge
// serve` (its decoder children are this test binary, see TestMain): each is
// segmented by the reference model into the same SEG as the uncompressed
// series (voxel for voxel when lossless), Orthanc is alive and answering
// after every row, segbridge asks Orthanc to transcode nothing (a proxy
// counts its requests), and a series whose codestreams are garbage fails
// naming its transfer syntax while the service goes on.
func TestSyntax_EndToEnd(t *testing.T) {
	start := time.Now()
	plugin := gdcmPlugin(t)
	s := setupSystemWith(t, nil, map[string]any{"Plugins": []string{plugin}})
	s.requirePlugin(t, "gdcm")
	proxy := &countingProxy{}
	s.restartServe(t, map[string]string{"ORTHANC_URL": proxy.start(t, s.orthanc.URL)})

	src16 := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "SYNTAX16", "--seed", "400")
	src8 := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "SYNTAX8", "--seed", "401", "--bits", "8")
	enhanced := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "SYNTAXENH", "--seed", "402", "--enhanced")

	type row struct {
		name   string
		src    *fixture.Series
		syntax string // compress.py's name; "" uploads src as it is
		args   []string
		ts     string // the transfer syntax Orthanc must have stored
		lossy  bool
		// wantErr, when set, is what the failed job's reason must say.
		wantErr []string
	}
	rows := []row{
		{name: "uncompressed 16-bit (reference)", src: src16, ts: "1.2.840.10008.1.2.1"},
		{name: "uncompressed 8-bit (reference)", src: src8, ts: "1.2.840.10008.1.2.1"},
		{name: "JPEG 2000 lossless", src: src16, syntax: "j2k", ts: "1.2.840.10008.1.2.4.90"},
		{name: "JPEG 2000 lossy", src: src16, syntax: "j2k-lossy", ts: "1.2.840.10008.1.2.4.91", lossy: true},
		{name: "JPEG 2000 lossless, enhanced MR multi-frame", src: enhanced, syntax: "j2k", ts: "1.2.840.10008.1.2.4.90"},
		{name: "HTJ2K lossless", src: src16, syntax: "htj2k", ts: "1.2.840.10008.1.2.4.201"},
		{name: "HTJ2K lossy", src: src16, syntax: "htj2k-lossy", ts: "1.2.840.10008.1.2.4.203", lossy: true},
		{name: "JPEG 2000 with a garbage codestream", src: src16, syntax: "j2k", args: []string{"--garbage"},
			ts: "1.2.840.10008.1.2.4.90", wantErr: []string{
				"JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)", "JPEG 2000 decoder: "}},
		// The row after the garbage one shows the service still works.
		{name: "RLE lossless", src: src16, syntax: "rle", ts: "1.2.840.10008.1.2.5"},
		{name: "deflated explicit VR little endian", src: src16, syntax: "deflate", ts: "1.2.840.10008.1.2.1.99"},
		{name: "explicit VR big endian", src: src16, syntax: "big-endian", ts: "1.2.840.10008.1.2.2"},
		{name: "JPEG baseline (8-bit)", src: src8, syntax: "jpeg-baseline", ts: "1.2.840.10008.1.2.4.50", lossy: true},
		{name: "JPEG extended (12-bit)", src: src16, syntax: "jpeg-extended", ts: "1.2.840.10008.1.2.4.51", lossy: true},
		{name: "JPEG lossless (process 14)", src: src16, syntax: "jpeg-lossless", ts: "1.2.840.10008.1.2.4.57"},
		{name: "JPEG lossless (first-order prediction)", src: src16, syntax: "jpeg-lossless-sv1", ts: "1.2.840.10008.1.2.4.70"},
		{name: "JPEG lossless 8-bit", src: src8, syntax: "jpeg-lossless-sv1", ts: "1.2.840.10008.1.2.4.70"},
		{name: "JPEG lossless, enhanced MR multi-frame, 3 fragments a frame, no offset table", src: enhanced,
			syntax: "jpeg-lossless-sv1", args: []string{"--fragments", "3", "--no-bot"}, ts: "1.2.840.10008.1.2.4.70"},
		{name: "JPEG lossless with a garbage codestream", src: src16, syntax: "jpeg-lossless-sv1", args: []string{"--garbage"},
			ts: "1.2.840.10008.1.2.4.70", wantErr: []string{"(1.2.840.10008.1.2.4.70)", "jpeg: "}},
		{name: "JPEG-LS lossless", src: src16, syntax: "jpegls", ts: "1.2.840.10008.1.2.4.80"},
		{name: "JPEG-LS near-lossless", src: src16, syntax: "jpegls-near", ts: "1.2.840.10008.1.2.4.81", lossy: true},
		{name: "JPEG-LS lossless, enhanced MR multi-frame, 2 fragments a frame, no offset table", src: enhanced,
			syntax: "jpegls", args: []string{"--fragments", "2", "--no-bot"}, ts: "1.2.840.10008.1.2.4.80"},
		{name: "JPEG-LS with a garbage codestream", src: src16, syntax: "jpegls", args: []string{"--garbage"},
			ts: "1.2.840.10008.1.2.4.80", wantErr: []string{"(1.2.840.10008.1.2.4.80)", "JPEG-LS decoder"}},
		{name: "JPEG 2000 lossless after the garbage rows", src: src16, syntax: "j2k", ts: "1.2.840.10008.1.2.4.90"},
	}
	reference := map[*fixture.Series][]uint8{}
	for i, r := range rows {
		ok := t.Run(r.name, func(t *testing.T) {
			rowStart := time.Now()
			dir := r.src.Dir
			if r.syntax != "" {
				dir = fixture.Compress(t, r.src.Dir, r.syntax, append([]string{"--new-uids", fmt.Sprint("row", i)}, r.args...)...)
			}
			id := s.upload(t, dir)
			s.checkStoredAs(t, id, r.ts)
			var job jobView
			if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &job); code != http.StatusAccepted && code != http.StatusOK {
				t.Fatalf("trigger answered %d %+v", code, job)
			}
			v := s.waitFinal(t, id, 120*time.Second)
			defer s.checkOrthancAlive(t)
			if len(r.wantErr) > 0 {
				if v.State != "failed" || len(v.Jobs) == 0 {
					t.Fatalf("state %s %+v, want failed", v.State, v.Jobs)
				}
				for _, w := range r.wantErr {
					if !strings.Contains(v.Jobs[0].Error, w) {
						t.Errorf("reason %q does not say %q", v.Jobs[0].Error, w)
					}
				}
				t.Logf("failed as it should, in %v: %s", time.Since(rowStart).Round(time.Millisecond), v.Jobs[0].Error)
				return
			}
			if v.State != "done" {
				t.Fatalf("state %s: %+v", v.State, v.Jobs)
			}
			mask := seriesMask(t, fixture.ReadSEG(t, s.segFile(t, v.Jobs[0].SEGSeriesID)), r.src)
			ref, isRef := reference[r.src], r.syntax == ""
			if r.src == enhanced {
				ref = reference[src16] // the same grid and pixels, as one multi-frame instance
			}
			if isRef {
				reference[r.src] = mask
				ref = mask
			}
			d := fixture.Dice(mask, ref)
			diff := 0
			for i := range mask {
				if mask[i] != ref[i] {
					diff++
				}
			}
			switch {
			case ref == nil:
				t.Fatal("the reference row did not run")
			case !r.lossy && diff != 0:
				t.Errorf("%d voxels differ from the uncompressed series' SEG (Dice %.5f); lossless must be exact", diff, d)
			case r.lossy && d < lossyDice:
				t.Errorf("Dice %.5f against the uncompressed series' SEG, want >= %.2f", d, lossyDice)
			}
			t.Logf("done in %v (job total %v ms, parse %v ms): Dice %.5f against the uncompressed SEG, %d voxels differ",
				time.Since(rowStart).Round(time.Millisecond), v.Jobs[0].Timings["total"], v.Jobs[0].Timings["parse"], d, diff)
		})
		if !ok && i < 2 {
			t.Fatal("a reference row failed; the rows after it compare against nothing")
		}
	}
	if n := proxy.count(regexp.MustCompile(`/modify$`)); n != 0 {
		t.Errorf("segbridge asked Orthanc for %d /modify requests (transcodes), want none", n)
	}
	t.Logf("%d rows in %v; %d requests to Orthanc, none a transcode", len(rows), time.Since(start).Round(time.Millisecond), proxy.count(regexp.MustCompile(`.`)))
}

// requirePlugin fails the test unless Orthanc has loaded plugin.
func (s *system) requirePlugin(t *testing.T, plugin string) {
	t.Helper()
	var plugins []string
	if err := s.orthanc.GetJSON(context.Background(), "/plugins", &plugins); err != nil || !contains(plugins, plugin) {
		t.Fatalf("Orthanc's plugins are %v (%v), want %s loaded", plugins, err, plugin)
	}
}

// gdcmPlugin finds Debian's orthanc-gdcm plugin.
func gdcmPlugin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg", "-L", "orthanc-gdcm").Output()
	if err != nil {
		t.Fatal("orthanc-gdcm is not installed: run make deps")
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(l, ".so") && strings.Contains(l, "Gdcm") {
			if _, err := os.Stat(l); err == nil {
				return l
			}
		}
	}
	t.Fatalf("no plugin library in orthanc-gdcm's files:\n%s", out)
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkStoredAs checks that Orthanc stored the series' first instance in
// transfer syntax ts. It reads the stored file, since Orthanc 1.10 records
// no TransferSyntax metadata for syntaxes it does not know (HTJ2K).
func (s *system) checkStoredAs(t *testing.T, id, ts string) {
	t.Helper()
	var ser struct{ Instances []string }
	if err := s.orthanc.GetJSON(context.Background(), "/series/"+id, &ser); err != nil || len(ser.Instances) == 0 {
		t.Fatalf("series %s: %v", id, err)
	}
	data, err := s.orthanc.Get(context.Background(), "/instances/"+ser.Instances[0]+"/file")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := volume.FileTransferSyntax(data); got != ts {
		t.Fatalf("Orthanc stored the series as %q, want %s", got, ts)
	}
}

// checkOrthancAlive checks that Orthanc answers /system and that its
// process, found by its configuration file, is running.
func (s *system) checkOrthancAlive(t *testing.T) {
	t.Helper()
	var sys struct{ Version string }
	if err := s.orthanc.GetJSON(context.Background(), "/system", &sys); err != nil || sys.Version == "" {
		t.Fatalf("Orthanc does not answer /system: %v", err)
	}
	if !orthancRunning(s.orthanc) {
		t.Fatal("Orthanc's process is gone")
	}
}

// orthancRunning looks for a running process whose command line names o's
// configuration file.
func orthancRunning(o *orthanctest.Server) bool {
	cfg := filepath.Join(o.Dir, "orthanc.json")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), cfg) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		// The state follows the command name in parentheses: Z is a zombie.
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i > 0 && i+2 < len(stat) && stat[i+2] != 'Z' {
			return true
		}
	}
	return false
}

// seriesMask places a SEG's frames on the source grid by position.
func seriesMask(t *testing.T, seg *fixture.SEG, src *fixture.Series) []uint8 {
	t.Helper()
	tr := src.Truth
	if seg.Rows != tr.Rows || seg.Cols != tr.Cols {
		t.Fatalf("SEG frames are %dx%d, source slices %dx%d", seg.Cols, seg.Rows, tr.Cols, tr.Rows)
	}
	plane := tr.Rows * tr.Cols
	mask := make([]uint8, plane*tr.Depth)
	for f, fr := range seg.Frames {
		k := -1
		for j, sl := range tr.Slices {
			if sl.IPP == fr.IPP {
				k = j
				break
			}
		}
		if k < 0 {
			t.Fatalf("SEG frame %d at %v lies on no source slice", f+1, fr.IPP)
		}
		for p := range plane {
			mask[k*plane+p] |= seg.Pixels[f*plane+p]
		}
	}
	return mask
}
