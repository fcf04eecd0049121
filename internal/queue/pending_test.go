package queue

import (
	"slices"
	"testing"
)

func TestQueue_Pending(t *testing.T) {
	q, tb := setup(t, Config{})
	ctx := tb.ctx
	a := "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-000000aa"
	b := "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-000000bb"

	t.Run("empty set", func(t *testing.T) {
		ids, err := q.Pending(ctx, "s")
		if err != nil || len(ids) != 0 {
			t.Fatalf("Pending = %v, %v; want none", ids, err)
		}
	})

	t.Run("add twice, list, remove, remove again", func(t *testing.T) {
		for _, id := range []string{a, b, a} {
			if err := q.AddPending(ctx, "s", id); err != nil {
				t.Fatal(err)
			}
		}
		// Another set and a cursor in the same bucket are not listed.
		if err := q.AddPending(ctx, "other", b); err != nil {
			t.Fatal(err)
		}
		if err := q.SetCursor(ctx, "s", 7); err != nil {
			t.Fatal(err)
		}
		ids, err := q.Pending(ctx, "s")
		slices.Sort(ids)
		if err != nil || !slices.Equal(ids, []string{a, b}) {
			t.Fatalf("Pending = %v, %v; want [%s %s]", ids, err, a, b)
		}
		for range 2 {
			if err := q.RemovePending(ctx, "s", a); err != nil {
				t.Fatal(err)
			}
		}
		ids, err = q.Pending(ctx, "s")
		if err != nil || !slices.Equal(ids, []string{b}) {
			t.Fatalf("after remove: Pending = %v, %v; want [%s]", ids, err, b)
		}
		if ids, _ := q.Pending(ctx, "other"); !slices.Equal(ids, []string{b}) {
			t.Fatalf("the other set lost its id: %v", ids)
		}
		if pos, ok, err := q.Cursor(ctx, "s"); err != nil || !ok || pos != 7 {
			t.Fatalf("cursor after pending changes: %d %v %v", pos, ok, err)
		}
	})

	t.Run("a removed id leaves no delete marker behind", func(t *testing.T) {
		if err := q.RemovePending(ctx, "s", b); err != nil {
			t.Fatal(err)
		}
		st, err := q.cursor.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Left: the cursor and the other set's id.
		if n := st.Values(); n != 2 {
			t.Fatalf("the cursor bucket holds %d messages, want 2 (no markers for removed ids)", n)
		}
	})

	t.Run("the set survives reopening the queue", func(t *testing.T) {
		q.Close()
		q2, _ := setup(t, Config{DataDir: tb.dir})
		ids, err := q2.Pending(ctx, "other")
		if err != nil || !slices.Equal(ids, []string{b}) {
			t.Fatalf("after reopen: Pending = %v, %v; want [%s]", ids, err, b)
		}
	})

	t.Run("names that would not read back are refused", func(t *testing.T) {
		for _, tc := range []struct{ set, id string }{{"a.b", a}, {"s", "x.y"}, {"s", ""}, {"", a}, {"s", "a*"}} {
			if err := q.AddPending(ctx, tc.set, tc.id); err == nil {
				t.Errorf("AddPending(%q, %q) succeeded", tc.set, tc.id)
			}
		}
	})
}
