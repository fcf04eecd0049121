package config

import (
	"strings"
	"testing"
)

func TestFromEnv_OrthancGDCMRestricted(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "SEGBRIDGE_ORTHANC_GDCM_RESTRICTED" {
				return v
			}
			return ""
		}
	}
	for _, tt := range []struct {
		value   string
		want    bool
		wantErr bool
	}{{"", false, false}, {"true", true, false}, {"false", false, false}, {"yes please", false, true}} {
		c, err := FromEnv(env(tt.value))
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "SEGBRIDGE_ORTHANC_GDCM_RESTRICTED") {
				t.Errorf("%q: error %v, want one naming the variable", tt.value, err)
			}
			continue
		}
		if err != nil || c.OrthancGDCMRestricted != tt.want {
			t.Errorf("%q: %v, %v; want %v", tt.value, c.OrthancGDCMRestricted, err, tt.want)
		}
	}
}
