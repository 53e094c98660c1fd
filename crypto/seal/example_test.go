package seal_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"filippo.io/age"

	"github.com/medfed/medfed/crypto/seal"
)

// Hospital A sends a threshold key share to hospital B through the
// coordinator, which sees only the routing header.
func ExampleSeal() {
	_, keyA, _ := ed25519.GenerateKey(rand.Reader)
	signerA, _ := seal.NewSigner("hospital-a", keyA)
	idB, _ := age.GenerateX25519Identity()
	roster := seal.Keys{"hospital-a": signerA.Public()}

	env, err := seal.Seal(signerA, "hospital-b", idB.Recipient(), "he/threshold-share", []byte("share for B"))
	if err != nil {
		panic(err)
	}

	h, _ := seal.ParseHeader(env) // what the coordinator relays on
	fmt.Println("route:", h.From, "->", h.To, h.Label)

	letter, err := seal.Open(env, "hospital-b", idB, roster)
	if err != nil {
		panic(err)
	}
	fmt.Printf("B got %q from %s\n", letter.Payload, letter.From)
	// Output:
	// route: hospital-a -> hospital-b he/threshold-share
	// B got "share for B" from hospital-a
}

// A hospital keeps its key share encrypted on disk under its age identity.
func ExampleEncrypt() {
	id, _ := age.GenerateX25519Identity()
	sealed, _ := seal.Encrypt([]byte("key share"), id.Recipient())
	plain, err := seal.Decrypt(sealed, id)
	fmt.Println(string(plain), err)
	// Output: key share <nil>
}
