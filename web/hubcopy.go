package web

import (
	"context"
	"slices"

	"github.com/thinfleet/thinfleet/store"
)

// copyOf is the hub's copy of one bucket of keyed values (enrollments,
// groups, rollouts), kept current by a watch of it. A fresh watch's
// initial values are gathered apart and swapped in at its Loaded mark, so
// that a page never sees half a reload. Its methods are called with the
// hub's lock held.
type copyOf[T any] struct {
	values map[string]T // nil until the first watch is loaded
	load   map[string]T // a fresh watch's initial values
	list   []T          // the values in order; nil when stale
	order  func(a, b T) int
}

// apply takes one change of the watch. It reports whether it was the
// first Loaded mark (the copy is in place) and whether the copy changed
// (a later reload, or a value written or deleted).
func (c *copyOf[T]) apply(ch store.Change[T]) (first, changed bool) {
	switch {
	case ch.Initial:
		if c.load == nil {
			c.load = map[string]T{}
		}
		c.load[ch.Key] = ch.Value
		return false, false
	case ch.Loaded:
		first = c.values == nil
		c.values, c.load, c.list = c.load, nil, nil
		if c.values == nil {
			c.values = map[string]T{}
		}
		return first, !first
	case ch.Deleted:
		delete(c.values, ch.Key)
	default:
		c.values[ch.Key] = ch.Value
	}
	c.list = nil
	return false, true
}

// sorted returns the values in order. The slice is shared: the caller
// must not change it.
func (c *copyOf[T]) sorted() []T {
	if c.list == nil {
		c.list = make([]T, 0, len(c.values))
		for _, v := range c.values {
			c.list = append(c.list, v)
		}
		slices.SortFunc(c.list, c.order)
	}
	return c.list
}

// get returns the value under key.
func (c *copyOf[T]) get(key string) (T, bool) {
	v, ok := c.values[key]
	return v, ok
}

// listOf returns c's values in order, from the hub's copy; until the
// hub's watches are in place, from the store (load), sorted the same way.
// The slice is shared: the caller must not change it.
func listOf[T any](ctx context.Context, h *hub, c *copyOf[T], load func(context.Context) ([]T, error)) ([]T, error) {
	h.ensure()
	if !h.wait(ctx) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vs, err := load(ctx)
		slices.SortFunc(vs, c.order)
		return vs, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return c.sorted(), nil
}
