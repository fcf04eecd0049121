package orthanc_test

import (
	"context"
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/orthanctest"
)

func TestClient_VerifyBeside(t *testing.T) {
	srv := orthanctest.Start(t, orthanctest.Options{})
	ctx := context.Background()
	ids, err := srv.Upload(ctx, makeSeries(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := orthanc.NewClient(zerolog.Nop(), orthanc.Config{URL: srv.URL, User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatal(err)
	}
	// A series is in its own study: as an "MR beside itself" it checks out.
	if err := c.VerifyBeside(ctx, ids[0], ids[0], "MR"); err != nil {
		t.Errorf("the series beside itself: %v", err)
	}
	for _, tc := range []struct{ name, id, modality string }{
		{"wrong modality", ids[0], "SR"},
		{"not an id", "../../system", "SR"},
		{"absent", "00000000-00000000-00000000-00000000-00000000", "SR"},
	} {
		if err := c.VerifyBeside(ctx, tc.id, ids[0], tc.modality); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else if tc.name != "absent" && !errors.Is(err, orthanc.ErrNotOurSEG) {
			t.Errorf("%s: %v, want ErrNotOurSEG", tc.name, err)
		}
	}
}
