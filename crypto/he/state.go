package he

import (
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/structs"
)

// maxCachedKeyShares bounds the public-key shares a party keeps (one per
// ceremony seed it has answered).
const maxCachedKeyShares = 64

// MarshalBinary encodes the party's whole state, secrets included: the
// secret-key share, seed nonce, flood key, Shamir polynomial, received and
// combined threshold shares, public-key shares it has issued and the record
// of which ciphertexts it answered for which active set (not the cached
// share bytes). Encrypt the result (crypto/seal) before it touches a disk.
//
// Layout: header | id u32 | threshold u16 | n u16 | parties n*u32 | nonce |
// flood key | secret poly | has-shamir u8 [threshold polys] | received u16 *
// (from u32, poly) | key shares u16 * (seed, poly) | issued u32 * (digest,
// contributions u32, threshold*u32).
func (pt *Party) MarshalBinary() ([]byte, error) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	p := pt.params
	b := appendHeader(nil, p, kindPartyState)
	b = le.AppendUint32(b, uint32(pt.id))
	b = le.AppendUint16(b, uint16(pt.group.Threshold))
	b = le.AppendUint16(b, uint16(len(pt.group.Parties)))
	for _, id := range pt.group.Parties {
		b = le.AppendUint32(b, uint32(id))
	}
	b = append(b, pt.nonce[:]...)
	b = append(b, pt.floodKey[:]...)
	b = p.appendPoly(b, pt.sk.Value.Q)
	if pt.shamir == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		for _, c := range pt.shamir.Value {
			b = p.appendPoly(b, c.Q)
		}
	}
	recv := sortedKeys(pt.received)
	b = le.AppendUint16(b, uint16(len(recv)))
	for _, id := range recv {
		b = le.AppendUint32(b, uint32(id))
		b = p.appendPoly(b, pt.received[id].Q)
	}
	b = le.AppendUint16(b, uint16(len(pt.pkShares)))
	for seed, raw := range pt.pkShares {
		b = append(b, seed[:]...)
		b = append(b, raw[headerSize+36:]...)
	}
	b = le.AppendUint32(b, uint32(len(pt.issued)))
	for digest, is := range pt.issued {
		b = append(b, digest[:]...)
		b = le.AppendUint32(b, uint32(is.contributions))
		for _, id := range is.active {
			b = le.AppendUint32(b, uint32(id))
		}
	}
	return b, nil
}

// stateReader consumes a party state with bounds checks before every read.
type stateReader struct {
	p   Params
	b   []byte
	err error
}

func (r *stateReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: party state: %s needs %d bytes, %d left", ErrMalformed, what, n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *stateReader) u16(what string) int {
	if b := r.take(2, what); b != nil {
		return int(le.Uint16(b))
	}
	return 0
}

func (r *stateReader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return le.Uint32(b)
	}
	return 0
}

func (r *stateReader) poly(dst ring.Poly, what string) {
	if b := r.take(r.p.polyBytes, what); b != nil {
		if err := r.p.readPoly(b, dst); err != nil {
			r.err = fmt.Errorf("party state: %s: %w", what, err)
		}
	}
}

// count reads a count and checks that at least count*minSize bytes remain,
// so no count can make the decoder allocate more than the input justifies.
func (r *stateReader) count(n, max, minSize int, what string) int {
	if r.err != nil {
		return 0
	}
	if n > max || n*minSize > len(r.b) {
		r.err = fmt.Errorf("%w: party state: %d %s (limit %d) need %d bytes, %d left", ErrMalformed, n, what, max, n*minSize, len(r.b))
		return 0
	}
	return n
}

// RestoreParty decodes a party state written by Party.MarshalBinary. The
// group must be the one the party was made for.
func RestoreParty(p Params, g Group, b []byte) (*Party, error) {
	g, err := g.canonical(p)
	if err != nil {
		return nil, err
	}
	rest, err := readHeader(b, p, kindPartyState, 8)
	if err != nil {
		return nil, err
	}
	r := &stateReader{p: p, b: rest}
	id := PartyID(r.u32("id"))
	t := r.u16("threshold")
	n := r.count(r.u16("group size"), p.profile.MaxParties, 4, "parties")
	parties := make([]PartyID, n)
	for i := range parties {
		parties[i] = PartyID(r.u32("party"))
	}
	if r.err == nil && (t != g.Threshold || !slices.Equal(parties, g.Parties) || !g.has(id)) {
		return nil, fmt.Errorf("%w: state of party %d for %v (t=%d) does not match group %v (t=%d)",
			ErrInvalidGroup, id, parties, t, g.Parties, g.Threshold)
	}
	pt := &Party{
		params:   p,
		group:    g,
		id:       id,
		pkShares: make(map[Seed][]byte),
		received: make(map[PartyID]mhe.ShamirSecretShare),
		issued:   make(map[[32]byte]*issuedShare),
	}
	copy(pt.nonce[:], r.take(32, "nonce"))
	copy(pt.floodKey[:], r.take(32, "flood key"))
	rqp := p.fhe.RingQP()
	sk := mhe.ShamirSecretShare{Poly: rqp.NewPoly()}
	r.poly(sk.Q, "secret key")
	pt.sk = newSecretKey(p, sk)
	if has := r.take(1, "shamir flag"); has != nil && has[0] == 1 {
		r.count(g.Threshold, g.Threshold, p.polyBytes, "shamir coefficients")
		coeffs := make(structs.Vector[ringqpPoly], 0, g.Threshold)
		for i := 0; i < g.Threshold && r.err == nil; i++ {
			c := rqp.NewPoly()
			r.poly(c.Q, "shamir coefficient")
			coeffs = append(coeffs, c)
		}
		pt.shamir = &mhe.ShamirPolynomial{Value: coeffs}
	} else if has != nil && has[0] != 0 {
		return nil, fmt.Errorf("%w: party state: shamir flag must be 0 or 1, got %d", ErrMalformed, has[0])
	}
	nrecv := r.count(r.u16("received count"), len(g.Parties), 4+p.polyBytes, "received shares")
	for i := 0; i < nrecv && r.err == nil; i++ {
		from := PartyID(r.u32("sender"))
		s := mhe.ShamirSecretShare{Poly: rqp.NewPoly()}
		r.poly(s.Q, "received share")
		if _, dup := pt.received[from]; r.err == nil && (!g.has(from) || dup) {
			return nil, fmt.Errorf("%w: party state: share from party %d", ErrMalformed, from)
		}
		pt.received[from] = s
	}
	npk := r.count(r.u16("key share count"), maxCachedKeyShares, 32+p.polyBytes, "key shares")
	for i := 0; i < npk && r.err == nil; i++ {
		var seed Seed
		copy(seed[:], r.take(32, "seed"))
		poly := r.take(p.polyBytes, "key share")
		if r.err == nil {
			raw := appendHeader(nil, p, kindPublicKeyShare)
			raw = le.AppendUint32(raw, uint32(id))
			raw = append(raw, seed[:]...)
			raw = append(raw, poly...)
			if _, err := DecodePublicKeyShare(p, raw); err != nil {
				return nil, fmt.Errorf("party state: %w", err)
			}
			pt.pkShares[seed] = raw
		}
	}
	entry := 32 + 4 + 4*g.Threshold
	nissued := r.count(int(r.u32("issued count")), 1<<24, entry, "issued shares")
	for i := 0; i < nissued && r.err == nil; i++ {
		var digest [32]byte
		copy(digest[:], r.take(32, "digest"))
		is := &issuedShare{contributions: int(r.u32("contributions")), active: make([]PartyID, g.Threshold)}
		for k := range is.active {
			is.active[k] = PartyID(r.u32("active party"))
		}
		pt.issued[digest] = is
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: party state: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(pt.received) > 0 && pt.shamir == nil {
		return nil, fmt.Errorf("%w: party state has received shares but no shamir polynomial", ErrMalformed)
	}
	pt.combineLocked()
	return pt, nil
}
