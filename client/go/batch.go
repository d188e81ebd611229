package keybroker

import (
	"context"
	"encoding/json"
	"errors"
)

// UnwrapItem is one blob's answer in a batch: Result, or Err with its own code.
type UnwrapItem struct {
	Result *Unwrapped
	Err    error
}

// RewrapItem is one blob's answer in a batch rewrap.
type RewrapItem struct {
	Result *Wrapped
	Err    error
}

// UnwrapMany unwraps blobs in as few requests as the broker's limits allow
// (MaxBatch blobs and MaxRequestBytes per request, split further when one is
// refused too_large). The answers are in the order of blobs; an item fails
// on its own. The error is the failure of a request as a whole.
func (c *Client) UnwrapMany(ctx context.Context, blobs []string) ([]UnwrapItem, error) {
	out := make([]UnwrapItem, 0, len(blobs))
	err := c.many(ctx, "unwrap", blobs, "", func(r *response, err error) {
		it := UnwrapItem{Err: err}
		if err == nil {
			it.Result, it.Err = unwrapped(r)
		}
		out = append(out, it)
	})
	return out, err
}

// RewrapMany rewraps blobs under the latest version of key ("" for each
// blob's own key), split and answered as UnwrapMany.
func (c *Client) RewrapMany(ctx context.Context, blobs []string, key string) ([]RewrapItem, error) {
	out := make([]RewrapItem, 0, len(blobs))
	err := c.many(ctx, "rewrap", blobs, key, func(r *response, err error) {
		it := RewrapItem{Err: err}
		if err == nil {
			it.Result, it.Err = wrapped(r)
		}
		out = append(out, it)
	})
	return out, err
}

func jsonLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b) + 1
}

func (c *Client) many(ctx context.Context, op string, blobs []string, key string,
	add func(*response, error)) error {
	items, head := c.MaxBatch, 64+len(key)+8
	if blobs == nil {
		blobs = []string{} // "blobs":[] asks all the same: the broker answers an empty batch
	}
	for i := 0; i < len(blobs) || (len(blobs) == 0 && i == 0); {
		size, m := head, 0
		for i+m < len(blobs) && m < items {
			b := jsonLen(blobs[i+m])
			if m > 0 && size+b > c.MaxRequestBytes {
				break
			}
			size += b
			m++
		}
		req := &request{Op: op, Blobs: blobs[i : i+m], Key: key}
		r, err := c.roundtrip(ctx, req)
		if errors.Is(err, ErrTooLarge) && m > 1 {
			items = m / 2
			continue
		}
		if errors.Is(err, ErrTooLarge) && m == 1 {
			add(nil, err)
			i++
			continue
		}
		if err != nil {
			return err
		}
		if len(r.Results) != m {
			return errorf(ErrProtocol, "the broker answered a batch of %d with %d results", m, len(r.Results))
		}
		for k := range r.Results {
			it := &r.Results[k]
			switch {
			case it.OK != nil && *it.OK:
				add(it, nil)
			default:
				add(nil, fromWire(it.Error))
			}
		}
		if len(blobs) == 0 {
			break
		}
		i += m
	}
	return nil
}
