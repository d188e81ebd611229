// Package keybroker is the Go client of keybrokerd, the local key broker: it
// speaks the NDJSON protocol of docs/protocol.md on the broker's Unix socket.
//
// A Client is one connection, safe for concurrent use: calls from many
// goroutines are pipelined on it, each matched to its answer by id, in any
// order. A connection the broker closed while idle (idle_timeout) is opened
// again by the next call. Every method takes a context.Context: when it ends
// while the request is in flight, the call returns its error at once and the
// broker's late answer is skipped; the connection stays usable.
//
// Errors are *Error values with the protocol's stable code; match them with
// errors.Is(err, keybroker.ErrBadBlob) and so on.
package keybroker

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// SocketEnv names the socket for clients, as for the CLI and libkeybroker.
const SocketEnv = "KEYBROKER_SOCKET"

// FallbackSocket is the default socket when XDG_RUNTIME_DIR is unset or empty.
const FallbackSocket = "/run/keybroker/keybroker.sock"

// The broker's default limits (max_batch, max_request_bytes), as libkeybroker's.
const (
	DefaultMaxBatch        = 1024
	DefaultMaxRequestBytes = 65536
)

// DefaultSocket is $KEYBROKER_SOCKET if set and non-empty, else
// $XDG_RUNTIME_DIR/keybroker.sock, else FallbackSocket.
func DefaultSocket() string {
	if p := os.Getenv(SocketEnv); p != "" {
		return p
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "keybroker.sock")
	}
	return FallbackSocket
}

// Client is a pipelined connection to keybrokerd.
type Client struct {
	path string
	// MaxBatch and MaxRequestBytes are the broker's limits, which UnwrapMany and
	// RewrapMany split batches to fit (and further when refused too_large). Set
	// them, if the broker's differ, before the client is shared.
	MaxBatch        int
	MaxRequestBytes int

	mu     sync.Mutex // guards cur and closed
	cur    *conn
	closed bool
}

// Dial connects to the broker at path ("" for DefaultSocket()).
func Dial(path string) (*Client, error) {
	return DialContext(context.Background(), path)
}

// DialContext is Dial bounded by ctx.
func DialContext(ctx context.Context, path string) (*Client, error) {
	if path == "" {
		path = DefaultSocket()
	}
	c := &Client{path: path, MaxBatch: DefaultMaxBatch, MaxRequestBytes: DefaultMaxRequestBytes}
	cn, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = cn
	return c, nil
}

func (c *Client) open(ctx context.Context) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, dialError(c.path, err)
	}
	return openConn(nc, c.path), nil
}

// Socket returns the path c connects to.
func (c *Client) Socket() string { return c.path }

// Close closes the connection; calls in flight fail with ErrIO.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cur != nil {
		c.cur.close()
	}
	return nil
}

// conn returns the open connection, opening a new one if the broker closed it.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errorf(ErrIO, "the client was closed")
	}
	if c.cur != nil && !c.cur.ended() {
		return c.cur, nil
	}
	cn, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = cn
	return cn, nil
}

// roundtrip sends req and waits for its answer, or for ctx to end.
func (c *Client) roundtrip(ctx context.Context, req any) (*response, error) {
	for attempt := 0; attempt < 2; attempt++ {
		cn, err := c.conn(ctx)
		if err != nil {
			return nil, err
		}
		id, w, err := cn.send(req)
		if err == errResend {
			continue
		}
		if err != nil {
			return nil, err
		}
		r, err := cn.wait(ctx, id, w)
		if err != nil {
			return nil, err
		}
		if r.err == errResend {
			continue
		}
		return r.r, r.err
	}
	return nil, errorf(ErrIO, "keybrokerd on %s closed the connection before answering; "+
		"the request may or may not have been done", c.path)
}

func need(v, what string) error {
	if v == "" {
		return errorf(ErrBadRequest, "%s must not be empty (nothing was sent)", what)
	}
	return nil
}

func need2(r *response, fields ...string) error {
	for i, f := range fields {
		if f == "" {
			return errorf(ErrProtocol, "the broker's answer lacks field %d", i)
		}
	}
	return nil
}

// Wrapped is the answer of Wrap and Rewrap: the blob to store, with the key
// and version that wrapped it.
type Wrapped struct {
	Blob, Key, Version string
}

// Unwrapped is the answer of Unwrap: the DEK, the blob's key and version,
// whether the broker's cache answered, and whether past its TTL (outage_grace).
type Unwrapped struct {
	Plaintext    []byte
	Key, Version string
	Cached       bool
	Stale        bool
}

// DataKey is the answer of DataKey: a DEK and its blob; Reused says the
// broker handed the same DEK out before (data-key reuse).
type DataKey struct {
	Plaintext          []byte
	Blob, Key, Version string
	Reused             bool
}

// Rotated is the answer of Rotate: the new latest version of Key.
type Rotated struct {
	Key, Version string
}

// AzureBlob is Azure's raw form of a wrapped key, which Unwrap also takes.
type AzureBlob struct {
	Kid   string `json:"kid"`
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

func wrapped(r *response) (*Wrapped, error) {
	if err := need2(r, r.Blob, r.Key, r.Version); err != nil {
		return nil, err
	}
	return &Wrapped{r.Blob, r.Key, r.Version}, nil
}

func unwrapped(r *response) (*Unwrapped, error) {
	if err := need2(r, r.Key, r.Version); err != nil || r.Plaintext == nil {
		return nil, errorf(ErrProtocol, "the broker's unwrap answer lacks a field")
	}
	return &Unwrapped{r.Plaintext, r.Key, r.Version, r.Cached, r.Stale}, nil
}

func (c *Client) object(ctx context.Context, req any) (map[string]any, error) {
	r, err := c.roundtrip(ctx, req)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(r.raw, &m); err != nil {
		return nil, errorf(ErrProtocol, "the broker's answer is not an object")
	}
	delete(m, "id")
	delete(m, "ok")
	return m, nil
}

// Call sends req (a request object with at least "op"; its "id" is replaced)
// and returns the answer's fields, for operations this package has no method for.
func (c *Client) Call(ctx context.Context, req map[string]any) (map[string]any, error) {
	if op, _ := req["op"].(string); op == "" {
		return nil, errorf(ErrBadRequest, "a request needs an \"op\" (nothing was sent)")
	}
	cp := make(map[string]any, len(req))
	for k, v := range req {
		cp[k] = v
	}
	return c.object(ctx, cp)
}

// Status returns the broker's status object (version, uptime_s, cache, keys, counters).
func (c *Client) Status(ctx context.Context) (map[string]any, error) {
	return c.object(ctx, &request{Op: "status"})
}

// Get describes key: backend, alg, kty, bits, enabled, latest, versions, public_key_pem.
func (c *Client) Get(ctx context.Context, key string) (map[string]any, error) {
	if err := need(key, "key"); err != nil {
		return nil, err
	}
	return c.object(ctx, &request{Op: "get", Key: key})
}

// Wrap wraps plaintext (1 to 1024 bytes; less for RSA) under the latest
// version of key, with alg ("" for the key's own algorithm).
func (c *Client) Wrap(ctx context.Context, key string, plaintext []byte, alg string) (*Wrapped, error) {
	if err := need(key, "key"); err != nil {
		return nil, err
	}
	if len(plaintext) == 0 {
		return nil, errorf(ErrBadRequest, "plaintext must not be empty (nothing was sent)")
	}
	req := &request{Op: "wrap", Key: key, Plaintext: plaintext, Alg: alg}
	r, err := c.roundtrip(ctx, req)
	if err != nil {
		return nil, err
	}
	return wrapped(r)
}

// Unwrap unwraps a kb1 blob, or Azure's raw form as a JSON string.
func (c *Client) Unwrap(ctx context.Context, blob string) (*Unwrapped, error) {
	if err := need(blob, "blob"); err != nil {
		return nil, err
	}
	r, err := c.roundtrip(ctx, &request{Op: "unwrap", Blob: blob})
	if err != nil {
		return nil, err
	}
	return unwrapped(r)
}

// UnwrapAzure unwraps Azure's raw form {"kid","alg","value"}.
func (c *Client) UnwrapAzure(ctx context.Context, blob AzureBlob) (*Unwrapped, error) {
	r, err := c.roundtrip(ctx, &request{Op: "unwrap", Blob: blob})
	if err != nil {
		return nil, err
	}
	return unwrapped(r)
}

// DataKey returns a fresh DEK of bits bits (0: 256) and its blob under key.
func (c *Client) DataKey(ctx context.Context, key string, bits int) (*DataKey, error) {
	if err := need(key, "key"); err != nil {
		return nil, err
	}
	if bits == 0 {
		bits = 256
	}
	r, err := c.roundtrip(ctx, &request{Op: "datakey", Key: key, Bits: bits})
	if err != nil {
		return nil, err
	}
	if err := need2(r, r.Blob, r.Key, r.Version); err != nil || r.Plaintext == nil {
		return nil, errorf(ErrProtocol, "the broker's datakey answer lacks a field")
	}
	return &DataKey{r.Plaintext, r.Blob, r.Key, r.Version, r.Reused}, nil
}

// Rewrap wraps the DEK inside blob again under the latest version of key
// ("" for the blob's own key); the DEK never leaves the broker.
func (c *Client) Rewrap(ctx context.Context, blob, key string) (*Wrapped, error) {
	if err := need(blob, "blob"); err != nil {
		return nil, err
	}
	req := &request{Op: "rewrap", Blob: blob, Key: key}
	r, err := c.roundtrip(ctx, req)
	if err != nil {
		return nil, err
	}
	return wrapped(r)
}

// Rotate makes a new latest version of key (an admin operation).
func (c *Client) Rotate(ctx context.Context, key string) (*Rotated, error) {
	if err := need(key, "key"); err != nil {
		return nil, err
	}
	r, err := c.roundtrip(ctx, &request{Op: "rotate", Key: key})
	if err != nil {
		return nil, err
	}
	if err := need2(r, r.Key, r.Version); err != nil {
		return nil, err
	}
	return &Rotated{r.Key, r.Version}, nil
}

// Flush evicts the cached DEKs of key ("" for every key) and returns how many
// (an admin operation).
func (c *Client) Flush(ctx context.Context, key string) (int, error) {
	req := &request{Op: "flush", Key: key}
	r, err := c.roundtrip(ctx, req)
	if err != nil {
		return 0, err
	}
	if r.Flushed == nil {
		return 0, errorf(ErrProtocol, "the broker's flush answer lacks \"flushed\"")
	}
	return *r.Flushed, nil
}

// Metrics returns the broker's counters in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	r, err := c.roundtrip(ctx, &request{Op: "metrics"})
	if err != nil {
		return "", err
	}
	if r.Text == nil {
		return "", errorf(ErrProtocol, "the broker's metrics answer lacks \"text\"")
	}
	return *r.Text, nil
}
