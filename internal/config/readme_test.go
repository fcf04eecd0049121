package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestREADME_VariablesMatchConfig reads the README's variable tables (those
// headed "| variable | default | meaning |") and checks them against
// Config's env tags: every variable segbridge reads is documented, nothing
// documented is unread, and each documented default is the one in the tag
// (or in the field's doc tag, where the README writes it for people).
func TestREADME_VariablesMatchConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	varRe := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	documented := map[string]string{} // variable -> default cell
	inTable := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| variable |"):
			inTable = true
		case !strings.HasPrefix(line, "|"):
			inTable = false
		}
		if !inTable || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		first := cells[1]
		for _, m := range varRe.FindAllStringSubmatch(first, -1) {
			documented[m[1]] = strings.TrimSpace(cells[2])
		}
		if strings.Contains(first, "(or `_FILE`)") {
			for _, m := range varRe.FindAllStringSubmatch(first, -1) {
				documented[m[1]+"_FILE"] = ""
			}
		}
	}
	read := map[string]reflect.StructField{}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			read[name] = f
		}
	}
	for _, s := range SecretVars {
		read[s], read[s+"_FILE"] = reflect.StructField{}, reflect.StructField{}
	}
	var missing, extra []string
	for v := range read {
		if _, ok := documented[v]; !ok {
			missing = append(missing, v)
		}
	}
	for v := range documented {
		if _, ok := read[v]; !ok {
			extra = append(extra, v)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("variables segbridge reads but the README's tables do not list: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("variables the README's tables list but segbridge does not read: %v", extra)
	}
	for v, f := range read {
		def, has := f.Tag.Lookup("envDefault")
		if !has {
			continue
		}
		if d, ok := f.Tag.Lookup("doc"); ok {
			def = d
		}
		if cell, ok := documented[v]; ok && !strings.Contains(cell, def) {
			t.Errorf("README says %s defaults to %q; Config says %q", v, cell, def)
		}
	}
}
