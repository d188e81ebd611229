// example: a data key from keybrokerd and back, as in client/go/README.md.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"keybroker"
)

func main() {
	ctx := context.Background()
	kb, err := keybroker.Dial("") // $KEYBROKER_SOCKET, else the default socket
	if err != nil {
		log.Fatal(err)
	}
	defer kb.Close()
	dk, err := kb.DataKey(ctx, "aes", 256) // a fresh DEK: encrypt with dk.Plaintext, store dk.Blob
	if err != nil {
		log.Fatal(err)
	}
	back, err := kb.Unwrap(ctx, dk.Blob)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("key %s version %s: same DEK %v\n", dk.Key, dk.Version, bytes.Equal(back.Plaintext, dk.Plaintext))
}
