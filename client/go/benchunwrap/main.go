// benchunwrap SOCKET KEY CLIENTS SECONDS: cached unwraps through the Go client,
// as `keybroker bench --op unwrap-hit` makes them with libkeybroker: CLIENTS
// goroutines, each with its own Client (one connection) and one request in
// flight. Prints one JSON line: throughput (requests/s) and p50_us.
// bench/compare runs it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"keybroker"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchunwrap:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: benchunwrap SOCKET KEY CLIENTS SECONDS")
		os.Exit(2)
	}
	sock, key := os.Args[1], os.Args[2]
	clients, _ := strconv.Atoi(os.Args[3])
	secs, _ := strconv.ParseFloat(os.Args[4], 64)
	ctx := context.Background()
	kb, err := keybroker.Dial(sock)
	if err != nil {
		fail(err)
	}
	var blobs []string
	for i := 0; i < 64; i++ {
		pt := make([]byte, 32)
		rand.Read(pt)
		w, err := kb.Wrap(ctx, key, pt, "")
		if err != nil {
			fail(err)
		}
		if _, err := kb.Unwrap(ctx, w.Blob); err != nil { // cached from here on
			fail(err)
		}
		blobs = append(blobs, w.Blob)
	}
	kb.Close()
	lat := make([][]time.Duration, clients)
	var ready, done sync.WaitGroup
	startCh := make(chan struct{})
	var stop time.Time
	for k := 0; k < clients; k++ {
		ready.Add(1)
		done.Add(1)
		go func(k int) {
			defer done.Done()
			c, err := keybroker.Dial(sock)
			if err != nil {
				fail(err)
			}
			defer c.Close()
			i := k
			for warm := time.Now().Add(300 * time.Millisecond); time.Now().Before(warm); i++ {
				if _, err := c.Unwrap(ctx, blobs[i%64]); err != nil {
					fail(err)
				}
			}
			ready.Done()
			<-startCh
			for {
				t := time.Now()
				if _, err := c.Unwrap(ctx, blobs[i%64]); err != nil {
					fail(err)
				}
				lat[k] = append(lat[k], time.Since(t))
				i++
				if t.After(stop) {
					return
				}
			}
		}(k)
	}
	ready.Wait()
	t0 := time.Now()
	stop = t0.Add(time.Duration(secs * float64(time.Second)))
	close(startCh)
	done.Wait()
	elapsed := time.Since(t0).Seconds()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	out, _ := json.Marshal(map[string]any{"client": "go", "clients": clients, "requests": len(all),
		"throughput": float64(len(all)) / elapsed, "p50_us": float64(all[len(all)/2]) / 1e3})
	fmt.Println(string(out))
}
