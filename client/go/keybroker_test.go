package keybroker_test

// These tests run against the real keybrokerd, on a SoftHSM token and on the
// akv-emulator, started by tests/clients/kbfix.py ($KB_FIX): it prints the
// socket path and obeys commands (stop, start, admin PATH JSON) on stdin.
// Without $KB_FIX (a plain `go test` outside meson) they skip.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"keybroker"
)

type fix struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     *bufio.Writer
	out    *bufio.Scanner
	Socket string
	AzURL  string
}

func start(t *testing.T, kind, extra string) *fix {
	script := os.Getenv("KB_FIX")
	if script == "" {
		t.Skip("KB_FIX is not set: run through meson (tests/clients)")
	}
	cmd := exec.Command("python3", script, kind, extra)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fix{t: t, cmd: cmd, in: bufio.NewWriter(stdin), out: bufio.NewScanner(stdout)}
	f.out.Buffer(make([]byte, 1<<20), 1<<20)
	if !f.out.Scan() {
		t.Fatalf("kbfix.py %s printed nothing", kind)
	}
	var hello struct {
		Socket string
		AzURL  string `json:"az_url"`
	}
	if err := json.Unmarshal(f.out.Bytes(), &hello); err != nil {
		t.Fatalf("kbfix.py: %s", f.out.Text())
	}
	f.Socket, f.AzURL = hello.Socket, hello.AzURL
	t.Cleanup(func() {
		f.in.WriteString("quit\n")
		f.in.Flush()
		stdin.Close()
		cmd.Wait()
	})
	return f
}

func (f *fix) do(cmd string) {
	f.t.Helper()
	f.in.WriteString(cmd + "\n")
	f.in.Flush()
	if !f.out.Scan() {
		f.t.Fatalf("kbfix.py: no answer to %s", cmd)
	}
	var r struct {
		OK    bool
		Error string
	}
	json.Unmarshal(f.out.Bytes(), &r)
	if !r.OK {
		f.t.Fatalf("kbfix.py %s: %s", cmd, r.Error)
	}
}

func dial(t *testing.T, f *fix) *keybroker.Client {
	c, err := keybroker.Dial(f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// must returns v, or fails the test (by a panic, which go test reports with the error).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	var e *keybroker.Error
	if !errors.Is(err, target) || !errors.As(err, &e) || len(e.Message) < 10 {
		t.Fatalf("want %v, got %v", target, err)
	}
}

var dek = bytes.Repeat([]byte{7}, 32)

func everyOperation(t *testing.T, c *keybroker.Client, key, rsa string) {
	ctx := context.Background()
	st := must(c.Status(ctx))
	if st["version"] == nil {
		t.Fatalf("status: %v", st)
	}
	if g := must(c.Get(ctx, key)); g["key"] != key {
		t.Fatalf("get: %v", g)
	}
	w := must(c.Wrap(ctx, key, dek, ""))
	u := must(c.Unwrap(ctx, w.Blob))
	if !bytes.Equal(u.Plaintext, dek) || u.Key != key {
		t.Fatalf("unwrap: %+v", u)
	}
	dk := must(c.DataKey(ctx, rsa, 128))
	if len(dk.Plaintext) != 16 || !bytes.Equal(must(c.Unwrap(ctx, dk.Blob)).Plaintext, dk.Plaintext) {
		t.Fatal("datakey")
	}
	rot := must(c.Rotate(ctx, key))
	rw := must(c.Rewrap(ctx, w.Blob, ""))
	if rw.Version != rot.Version || rot.Version == w.Version {
		t.Fatalf("rewrap %+v after rotate %+v", rw, rot)
	}
	if n := must(c.Flush(ctx, key)); n < 1 {
		t.Fatalf("flushed %d", n)
	}
	if !strings.Contains(must(c.Metrics(ctx)), "keybroker_") {
		t.Fatal("metrics")
	}
	many := must(c.UnwrapMany(ctx, []string{w.Blob, "kb1:" + key + ":01:AES-KWP:AAAA:zzzzzzzz", dk.Blob}))
	if !bytes.Equal(many[0].Result.Plaintext, dek) || !errors.Is(many[1].Err, keybroker.ErrBadBlob) ||
		!bytes.Equal(many[2].Result.Plaintext, dk.Plaintext) {
		t.Fatalf("unwrap many: %+v", many)
	}
	if r := must(c.RewrapMany(ctx, []string{w.Blob}, key)); r[0].Result.Version != rot.Version {
		t.Fatalf("rewrap many: %+v", r)
	}
	if r := must(c.UnwrapMany(ctx, nil)); len(r) != 0 {
		t.Fatal("empty batch")
	}
}

func TestEveryOperationSoftHSM(t *testing.T) {
	f := start(t, "softhsm", "")
	everyOperation(t, dial(t, f), "aes", "rsa")
}

func TestEveryOperationAzure(t *testing.T) {
	f := start(t, "azure", "")
	c := dial(t, f)
	everyOperation(t, c, "hsm", "az")
	ctx := context.Background()
	w := must(c.Wrap(ctx, "az", dek, ""))
	parts := strings.Split(w.Blob, ":")
	// the alg and ciphertext are the two fields before the check (kb2 has the fingerprint after the version)
	// Azure's raw form: the kid names the vault key's version
	raw := keybroker.AzureBlob{Kid: f.AzURL + "/" + parts[2], Alg: parts[len(parts)-3], Value: parts[len(parts)-2]}
	if u := must(c.UnwrapAzure(ctx, raw)); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("raw form")
	}
	js, _ := json.Marshal(raw)
	if u := must(c.Unwrap(ctx, string(js))); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("raw form as a string")
	}
}

func TestErrorCodes(t *testing.T) {
	f := start(t, "softhsm", "")
	c := dial(t, f)
	ctx := context.Background()
	w := must(c.Wrap(ctx, "aes", dek, ""))
	_, err := c.DataKey(ctx, "aes", 7)
	wantErr(t, err, keybroker.ErrBadRequest)
	_, err = c.Call(ctx, map[string]any{"op": "frobnicate"})
	wantErr(t, err, keybroker.ErrUnknownOp)
	_, err = c.Wrap(ctx, "aes", make([]byte, 2000), "")
	wantErr(t, err, keybroker.ErrTooLarge)
	_, err = c.Wrap(ctx, "nope", dek, "")
	wantErr(t, err, keybroker.ErrUnknownKey)
	_, err = c.Unwrap(ctx, w.Blob[:len(w.Blob)-3]+"AAA")
	wantErr(t, err, keybroker.ErrBadBlob)
	_, err = c.Wrap(ctx, "rsa", dek, "RSA-OAEP-256")
	wantErr(t, err, keybroker.ErrMechanismUnsupported)
	if errors.Is(err, keybroker.ErrBadBlob) {
		t.Fatal("errors.Is matches one code only")
	}
	_, err = keybroker.Dial("/nonexistent/kb.sock")
	wantErr(t, err, keybroker.ErrIO)
	f.do("stop")
	_, err = c.Unwrap(ctx, w.Blob)
	wantErr(t, err, keybroker.ErrIO)
}

func TestThousandPipelinedUnwrapsOneConnection(t *testing.T) {
	f := start(t, "softhsm", "max_inflight = 1024\n")
	c := dial(t, f)
	ctx := context.Background()
	var dks []*keybroker.DataKey
	for i := 0; i < 50; i++ {
		dks = append(dks, must(c.DataKey(ctx, "aes", 0)))
	}
	must(c.Flush(ctx, ""))
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			u, err := c.Unwrap(ctx, dks[i%50].Blob)
			if err == nil && !bytes.Equal(u.Plaintext, dks[i%50].Plaintext) {
				err = fmt.Errorf("unwrap %d: wrong plaintext", i)
			}
			if err != nil {
				errs <- err
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(order) != 1000 {
		t.Fatalf("%d answers", len(order))
	}
}

func TestBrokerRestartCleanErrorThenRecovery(t *testing.T) {
	f := start(t, "softhsm", "")
	c := dial(t, f)
	ctx := context.Background()
	w := must(c.Wrap(ctx, "aes", dek, ""))
	f.do("stop")
	_, err := c.Unwrap(ctx, w.Blob)
	wantErr(t, err, keybroker.ErrIO)
	f.do("start")
	if u := must(c.Unwrap(ctx, w.Blob)); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("after the restart")
	}
}

func TestIdleTimeoutReconnect(t *testing.T) {
	f := start(t, "softhsm", "idle_timeout = 1s\n")
	c := dial(t, f)
	ctx := context.Background()
	w := must(c.Wrap(ctx, "aes", dek, ""))
	// wait for the broker to close the idle connection
	deadline := time.Now().Add(10 * time.Second)
	for !keybroker.Closed(c) {
		if time.Now().After(deadline) {
			t.Fatal("the broker did not close the idle connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if u := must(c.Unwrap(ctx, w.Blob)); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("after the idle close")
	}
}

func TestBatchLargerThanOneRequest(t *testing.T) {
	f := start(t, "softhsm", "max_batch = 100\n")
	c := dial(t, f)
	ctx := context.Background()
	var blobs []string
	var pts [][]byte
	for i := 0; i < 30; i++ {
		dk := must(c.DataKey(ctx, "aes", 0))
		blobs, pts = append(blobs, dk.Blob), append(pts, dk.Plaintext)
	}
	var all []string
	for i := 0; i < 2500; i++ {
		all = append(all, blobs[i%30])
	}
	res := must(c.UnwrapMany(ctx, all))
	if len(res) != 2500 {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.Err != nil || !bytes.Equal(r.Result.Plaintext, pts[i%30]) {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	c.MaxRequestBytes = 4096
	rw := must(c.RewrapMany(ctx, all[:300], ""))
	if len(rw) != 300 || rw[299].Err != nil {
		t.Fatalf("rewrap many split by bytes: %d", len(rw))
	}
}

func TestContextCancelledInFlight(t *testing.T) {
	f := start(t, "azure", "")
	c := dial(t, f)
	ctx := context.Background()
	w := must(c.Wrap(ctx, "az", dek, ""))
	must(c.Flush(ctx, ""))
	f.do(`admin /admin/faults {"latency_ms": 1500}`)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.Unwrap(cctx, w.Blob)
		done <- err
	}()
	for keybroker.InFlight(c) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if keybroker.InFlight(c) != 0 {
		t.Fatal("the cancelled request is still waiting")
	}
	f.do(`admin /admin/faults {"latency_ms": 0}`)
	if u := must(c.Unwrap(ctx, w.Blob)); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("the connection is usable after a cancel")
	}
}

func TestErrorCodesPolicyAndAudit(t *testing.T) {
	f := start(t, "softhsm", "audit_log = /dev/full\nadmin_uids = nobody\nmax_connections = 1\n")
	c := dial(t, f)
	ctx := context.Background()
	_, err := c.Unwrap(ctx, "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz")
	if !errors.Is(err, keybroker.ErrBadBlob) && !errors.Is(err, keybroker.ErrAuditUnavailable) {
		t.Fatalf("unwrap: %v", err)
	}
	_, err = c.Wrap(ctx, "aes", dek, "")
	wantErr(t, err, keybroker.ErrAuditUnavailable)
	_, err = c.Rotate(ctx, "aes")
	wantErr(t, err, keybroker.ErrPermissionDenied)
	second := dial(t, f) // over max_connections: the broker's one line answers its request
	_, err = second.Status(ctx)
	wantErr(t, err, keybroker.ErrBusy)
}

func TestErrorCodesAzure(t *testing.T) {
	f := start(t, "azure", "")
	c := dial(t, f)
	ctx := context.Background()
	w := must(c.Wrap(ctx, "az", dek, ""))
	f.do(`admin /admin/keys/disable {"vault": "kv", "key": "rsa"}`)
	must(c.Flush(ctx, ""))
	_, err := c.Unwrap(ctx, w.Blob)
	wantErr(t, err, keybroker.ErrKeyDisabled)
	f.do(`admin /admin/keys/enable {"vault": "kv", "key": "rsa"}`)
	f.do(`admin /admin/permissions/revoke {"principal": "kb-app", "vault": "kv", "key": "rsa", "permissions": ["unwrapKey"]}`)
	must(c.Flush(ctx, ""))
	_, err = c.Unwrap(ctx, w.Blob)
	wantErr(t, err, keybroker.ErrPermissionDenied)
	f.do(`admin /admin/permissions/grant {"principal": "kb-app", "vault": "kv", "key": "rsa", "permissions": ["unwrapKey"]}`)
	if u := must(c.Unwrap(ctx, w.Blob)); !bytes.Equal(u.Plaintext, dek) {
		t.Fatal("granted again")
	}
	f.do("emu-stop")
	must(c.Flush(ctx, ""))
	_, err = c.Unwrap(ctx, w.Blob)
	wantErr(t, err, keybroker.ErrBackendUnavailable)
}
