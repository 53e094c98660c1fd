package seal

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestEnrolment(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := FormatEnrolment(id.Recipient(), pub)
	r, k, err := ParseEnrolment(s)
	if err != nil {
		t.Fatal(err)
	}
	if r.String() != id.Recipient().String() || !bytes.Equal(k, pub) {
		t.Errorf("round trip of %q gave %s, %x", s, r, k)
	}
	for _, bad := range []struct{ s, want string }{
		{"", "expected"},
		{id.Recipient().String(), "expected"},
		{"age1h1 " + s[strings.Index(s, " ")+1:], "recipient"},
		{strings.Replace(s, "ed25519:", "ed25519:AAAA", 1), "signing key"},
		{strings.Replace(s, "ed25519:", "rsa:", 1), "expected"},
		{s + " more", "expected"},
	} {
		if _, _, err := ParseEnrolment(bad.s); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseEnrolment(%.50q): %v, want ErrMalformed saying %q", bad.s, err, bad.want)
		}
	}
	if _, _, err := ParseEnrolment(s + strings.Repeat(" ", MaxEnrolment)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized enrolment: %v, want ErrTooLarge", err)
	}
}

// FuzzParseEnrolment: any string either parses to a recipient and key that format back to
// an enrolment that parses the same, or fails with ErrMalformed or ErrTooLarge.
func FuzzParseEnrolment(f *testing.F) {
	id, _ := age.GenerateX25519Identity()
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	f.Add(FormatEnrolment(id.Recipient(), pub))
	f.Add("age1 ed25519:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		r, k, err := ParseEnrolment(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		r2, k2, err := ParseEnrolment(FormatEnrolment(r, k))
		if err != nil || r2.String() != r.String() || !bytes.Equal(k, k2) {
			t.Fatalf("%q: formatted again: %v", s, err)
		}
	})
}
