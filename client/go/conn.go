package keybroker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
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
	ID        json.RawMessage `json:"id"`
	OK        *bool           `json:"ok"`
	Error     *wireError      `json:"error"`
	Blob      string          `json:"blob"`
	Key       string          `json:"key"`
	Version   string          `json:"version"`
	Plaintext []byte          `json:"plaintext"`
	Cached    bool            `json:"cached"`
	Stale     bool            `json:"stale"`
	Reused    bool            `json:"reused"`
	Flushed   *int            `json:"flushed"`
	Text      *string         `json:"text"`
	Results   []response      `json:"results"`
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

// conn is one connection: the reader goroutine owns reading, mu guards
// waiting and the counters, wmu keeps each request line whole.
type conn struct {
	path     string
	nc       net.Conn
	wmu      sync.Mutex
	mu       sync.Mutex
	waiting  map[uint64]*waiter
	nextID   uint64
	answered int // answers read
	idleMark int // answered when the oldest request in flight was sent
	closed   bool
}

func openConn(nc net.Conn, path string) *conn {
	c := &conn{path: path, nc: nc, waiting: map[uint64]*waiter{}, nextID: 1}
	go c.read()
	return c
}

func (c *conn) read() {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var err error
	for {
		var line []byte
		line, err = readLine(br)
		if err != nil {
			break
		}
		if err = c.dispatch(line); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		err = errorf(ErrIO, "keybrokerd on %s closed the connection before answering; "+
			"the request may or may not have been done", c.path)
	} else if _, ok := err.(*Error); !ok {
		err = errorf(ErrIO, "reading %s: %v", c.path, err)
	}
	c.end(err)
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil {
		return append([]byte(nil), line...), nil
	}
	buf := append([]byte(nil), line...)
	for err == bufio.ErrBufferFull {
		if len(buf) > MaxResponse {
			return nil, errorf(ErrProtocol, "keybrokerd sent a line over %d bytes", MaxResponse)
		}
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
	}
	if err != nil {
		return nil, err
	}
	return buf, nil
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
	if len(r.ID) == 0 || bytes.Equal(r.ID, []byte("null")) {
		// a line it could not frame (too_large: the longest in flight) or a refused
		// connection (permission_denied, busy): the broker closes after it
		for k, w := range c.waiting {
			if !found || w.size > c.waiting[id].size {
				id, found = k, true
			}
		}
	} else if json.Unmarshal(r.ID, &id) == nil {
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

// send writes req with the next id and returns where its answer will come.
func (c *conn) send(req map[string]any) (uint64, *waiter, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, nil, errResend
	}
	id := c.nextID
	c.nextID++
	req["id"] = id
	line, err := json.Marshal(req)
	if err != nil {
		c.mu.Unlock()
		return 0, nil, errorf(ErrBadRequest, "cannot encode the request: %v", err)
	}
	line = append(line, '\n')
	op, _ := req["op"].(string)
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
