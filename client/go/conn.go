package keybroker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// MaxResponse bounds one answer line, as libkeybroker's KB_MAX_RESPONSE.
const MaxResponse = 1 << 20

// resendable: the ops sent again when the broker closed an idle connection
// before reading them (all but rotate, which would make a second version).
var resendable = map[string]bool{"status": true, "get": true, "wrap": true, "unwrap": true,
	"datakey": true, "rewrap": true, "flush": true, "metrics": true}

// errResend: the broker closed an idle connection before answering: send again.
var errResend = errors.New("keybroker: resend")

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// response holds the fields of any answer; raw is the line, for status and get.
type response struct {
	ID        *uint64    `json:"id"` // nil: null, a line the broker could not frame
	OK        *bool      `json:"ok"`
	Error     *wireError `json:"error"`
	Blob      string     `json:"blob"`
	Key       string     `json:"key"`
	Version   string     `json:"version"`
	Plaintext []byte     `json:"plaintext"`
	Cached    bool       `json:"cached"`
	Stale     bool       `json:"stale"`
	Reused    bool       `json:"reused"`
	Flushed   *int       `json:"flushed"`
	Text      *string    `json:"text"`
	Results   []response `json:"results"`
	raw       []byte
}

type reply struct {
	r   *response
	err error
}

type waiter struct {
	ch     chan reply // buffered: the reader never blocks on a caller gone away
	size   int        // the request line's length
	resend bool
}

// conn is one connection. There is no reader goroutine: a caller waiting for
// its answer reads the socket itself when no other caller is reading (rmu),
// and hands every line it reads to the caller with that id, so a lone caller
// pays for no goroutine switch. When the reader leaves, it passes the turn to
// one of the callers still waiting. mu guards waiting and the counters, wmu
// keeps each request line whole.
type conn struct {
	path     string
	nc       net.Conn
	wmu      sync.Mutex
	rmu      sync.Mutex    // held by the caller reading the socket
	turn     chan struct{} // a waiting caller may take the reader's place
	rbuf     []byte        // bytes read but not yet handed out (rmu)
	mu       sync.Mutex
	waiting  map[uint64]*waiter
	nextID   uint64
	answered int // answers read
	idleMark int // answered when the oldest request in flight was sent
	closed   bool
}

func openConn(nc net.Conn, path string) *conn {
	return &conn{path: path, nc: nc, waiting: map[uint64]*waiter{}, nextID: 1,
		turn: make(chan struct{}, 1)}
}

// wait returns the answer to w, reading the socket when it is its turn, or
// ctx's error when ctx ends first (w is then forgotten).
func (c *conn) wait(ctx context.Context, id uint64, w *waiter) (reply, error) {
	for {
		select {
		case r := <-w.ch:
			c.passTurn()
			return r, nil
		default:
		}
		if c.rmu.TryLock() {
			select {
			case r := <-w.ch: // answered while we took the lock
				c.rmu.Unlock()
				c.passTurn()
				return r, nil
			default:
			}
			err := c.readOne(ctx)
			c.rmu.Unlock()
			if err != nil && ctx.Err() != nil {
				c.forget(id)
				c.passTurn()
				return reply{}, ctx.Err()
			}
			if err != nil {
				c.end(err)
			}
			continue
		}
		select {
		case r := <-w.ch:
			c.passTurn()
			return r, nil
		case <-c.turn:
		case <-ctx.Done():
			c.forget(id)
			return reply{}, ctx.Err()
		}
	}
}

// passTurn wakes one waiting caller to read, if any waits and none reads.
func (c *conn) passTurn() {
	if c.load() == 0 {
		return
	}
	select {
	case c.turn <- struct{}{}:
	default:
	}
}

// readOne reads until at least one whole line is handed out (rmu held). When
// ctx ends meanwhile, it returns ctx's error and keeps what it read.
func (c *conn) readOne(ctx context.Context) error {
	if done := ctx.Done(); done != nil {
		stop, exited := make(chan struct{}), make(chan struct{})
		defer func() {
			close(stop)
			<-exited // so its deadline cannot land after the reset below
			c.nc.SetReadDeadline(time.Time{})
		}()
		go func() {
			defer close(exited)
			select {
			case <-done:
				c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the Read below
			case <-stop:
			}
		}()
	}
	var chunk [64 << 10]byte
	for {
		if nl := bytes.IndexByte(c.rbuf, '\n'); nl >= 0 {
			for nl >= 0 {
				line := append([]byte(nil), c.rbuf[:nl+1]...)
				c.rbuf = c.rbuf[nl+1:]
				if err := c.dispatch(line); err != nil {
					return err
				}
				nl = bytes.IndexByte(c.rbuf, '\n')
			}
			if len(c.rbuf) == 0 {
				c.rbuf = nil
			}
			return nil
		}
		if len(c.rbuf) > MaxResponse {
			return errorf(ErrProtocol, "keybrokerd on %s sent a line over %d bytes", c.path, MaxResponse)
		}
		n, err := c.nc.Read(chunk[:])
		c.rbuf = append(c.rbuf, chunk[:n]...)
		if err != nil && n == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return errorf(ErrIO, "keybrokerd on %s closed the connection before answering; "+
					"the request may or may not have been done", c.path)
			}
			return errorf(ErrIO, "reading %s: %v", c.path, err)
		}
	}
}

// ended reports, without blocking, whether the broker has closed this idle
// connection (idle_timeout): nothing is owed on it, so nothing is lost.
func (c *conn) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true
	}
	if len(c.waiting) > 0 || len(c.rbuf) > 0 {
		return false
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err == syscall.ECONNRESET
		return true
	})
	if gone {
		c.closed = true
		c.nc.Close()
	}
	return gone
}

func (c *conn) dispatch(line []byte) error {
	r := &response{raw: line}
	if err := json.Unmarshal(line, r); err != nil {
		return errorf(ErrProtocol, "keybrokerd on %s sent a line that is not a JSON object", c.path)
	}
	c.mu.Lock()
	c.answered++
	var id uint64
	found := false
	if r.ID == nil {
		// a line it could not frame (too_large: the longest in flight) or a refused
		// connection (permission_denied, busy): the broker closes after it
		for k, w := range c.waiting {
			if !found || w.size > c.waiting[id].size {
				id, found = k, true
			}
		}
	} else {
		id = *r.ID
		_, found = c.waiting[id]
	}
	var w *waiter
	if found {
		w = c.waiting[id]
		delete(c.waiting, id)
	}
	c.mu.Unlock()
	if w == nil {
		return nil // the answer to a request its caller abandoned
	}
	switch {
	case r.OK == nil:
		w.ch <- reply{err: errorf(ErrProtocol, "keybrokerd on %s sent an answer without \"ok\"", c.path)}
	case *r.OK:
		w.ch <- reply{r: r}
	default:
		w.ch <- reply{err: fromWire(r.Error)}
	}
	return nil
}

// end fails what is waiting; requests the broker closed an idle connection on
// before answering anything sent since it was idle get errResend.
func (c *conn) end(err error) {
	c.mu.Lock()
	idle := c.answered == c.idleMark
	c.closed = true
	for id, w := range c.waiting {
		if idle && w.resend {
			w.ch <- reply{err: errResend}
		} else {
			w.ch <- reply{err: err}
		}
		delete(c.waiting, id)
	}
	c.mu.Unlock()
	c.nc.Close()
}

func (c *conn) load() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiting)
}

// request is every operation's request; Blob and Blobs are any so that an
// Azure object, and an empty batch ("blobs":[]), marshal as they are.
type request struct {
	Op        string `json:"op"`
	Key       string `json:"key,omitempty"`
	Blob      any    `json:"blob,omitempty"`
	Blobs     any    `json:"blobs,omitempty"`
	Plaintext []byte `json:"plaintext,omitempty"`
	Alg       string `json:"alg,omitempty"`
	Bits      int    `json:"bits,omitempty"`
	ID        uint64 `json:"id"`
}

// send writes req (a *request, or Call's map) with the next id and returns
// where its answer will come.
func (c *conn) send(req any) (uint64, *waiter, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, nil, errResend
	}
	id := c.nextID
	c.nextID++
	var op string
	switch r := req.(type) {
	case *request:
		r.ID, op = id, r.Op
	case map[string]any:
		r["id"] = id
		op, _ = r["op"].(string)
	}
	line, err := json.Marshal(req)
	if err != nil {
		c.mu.Unlock()
		return 0, nil, errorf(ErrBadRequest, "cannot encode the request: %v", err)
	}
	line = append(line, '\n')
	w := &waiter{ch: make(chan reply, 1), size: len(line), resend: resendable[op]}
	if len(c.waiting) == 0 {
		c.idleMark = c.answered
	}
	c.waiting[id] = w
	c.mu.Unlock()
	c.wmu.Lock()
	_, err = c.nc.Write(line)
	c.wmu.Unlock()
	// a failed write shows as the reader's end: the answer (or the failure) comes on w.ch
	_ = err
	return id, w, nil
}

func (c *conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

func (c *conn) close() {
	c.nc.Close()
}

func dialError(path string, err error) error {
	hint := ""
	var op *net.OpError
	if errors.As(err, &op) {
		hint = "; is keybrokerd running? (set $" + SocketEnv + " or pass the socket path)"
	}
	return errorf(ErrIO, "cannot connect to %s: %v%s", path, err, hint)
}
