package he

import (
	"fmt"
	"math"
	"slices"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// DecryptionShare is one party's share of the collective decryption of an
// aggregate (mhe.KeySwitchProtocol towards the zero key, plus flooding). It
// names the ciphertext (Digest), the active set and the contribution count it
// was made for.
type DecryptionShare struct {
	Party         PartyID
	Active        []PartyID
	Contributions int
	Length        int
	Digest        [32]byte
	polys         []ring.Poly
	raw           []byte
	params        Params
}

// publishGrid is the resolution of published results: decoded values are
// rounded to multiples of 2^-32 (about 2.3e-10), far below the flooding noise
// and the 1e-6 precision target, so no low-order bits leave the decoder.
const publishGrid = 1 << 32

// Decryption is the coordinator's side of a collective decryption: it checks
// and sums the decryption shares of the active set into the aggregate and
// decodes the result. It learns the weighted sum and nothing else. A
// Decryption is not safe for concurrent use.
type Decryption struct {
	params Params
	group  Group
	agg    *Vector
	digest [32]byte
	active []PartyID
	acc    []ring.Poly
	got    map[PartyID]bool
}

// NewDecryption starts decrypting agg with the given active set: exactly
// Threshold members of g. Every party must be asked with the same set.
func NewDecryption(p Params, g Group, agg *Vector, active []PartyID) (*Decryption, error) {
	g, err := g.canonical(p)
	if err != nil {
		return nil, err
	}
	set, err := g.activeSet(active)
	if err != nil {
		return nil, err
	}
	if err := agg.check(p); err != nil {
		return nil, err
	}
	d := &Decryption{
		params: p,
		group:  g,
		agg:    agg,
		digest: agg.Digest(),
		active: set,
		acc:    make([]ring.Poly, len(agg.cts)),
		got:    make(map[PartyID]bool),
	}
	for i, ct := range agg.cts {
		d.acc[i] = *ct.Value[0].CopyNew()
	}
	return d, nil
}

// AddShare checks a share against the aggregate and the active set and adds
// it. A second share from the same party is ErrDuplicate.
func (d *Decryption) AddShare(s *DecryptionShare) error {
	if err := d.checkShare(s, len(s.polys)); err != nil {
		return err
	}
	rq := d.params.fhe.RingQ()
	for i := range d.acc {
		rq.Add(d.acc[i], s.polys[i], d.acc[i])
	}
	d.got[s.Party] = true
	return nil
}

func (d *Decryption) checkShare(s *DecryptionShare, npolys int) error {
	switch {
	case s.Digest != d.digest:
		return fmt.Errorf("%w: share from party %d is for ciphertext %x, expected %x",
			ErrShareConflict, s.Party, s.Digest[:8], d.digest[:8])
	case !slices.Equal(s.Active, d.active):
		return fmt.Errorf("%w: share from party %d is for active set %v, expected %v", ErrActiveSet, s.Party, s.Active, d.active)
	case s.Contributions != d.agg.contributions:
		return fmt.Errorf("%w: share from party %d is for %d contributions, expected %d",
			ErrShareConflict, s.Party, s.Contributions, d.agg.contributions)
	case s.Length != d.agg.length || npolys != len(d.acc):
		return fmt.Errorf("%w: share from party %d has %d values, expected %d", ErrShape, s.Party, s.Length, d.agg.length)
	case d.got[s.Party]:
		return fmt.Errorf("%w: second decryption share from party %d", ErrDuplicate, s.Party)
	}
	if _, ok := slices.BinarySearch(d.active, s.Party); !ok {
		return fmt.Errorf("%w: share from party %d outside the active set %v", ErrActiveSet, s.Party, d.active)
	}
	return nil
}

// AddShareBinary decodes a wire-encoded share and adds it in one pass. On
// error the decryption is unchanged.
func (d *Decryption) AddShareBinary(b []byte) error {
	s, body, err := d.params.shareHeader(b)
	if err != nil {
		return err
	}
	if err := d.checkShare(s, len(d.acc)); err != nil {
		return err
	}
	p := d.params
	qs := p.fhe.Q()
	for j := range d.acc {
		off := j * p.polyBytes
		for i, q := range qs {
			row := d.acc[j].Coeffs[i]
			n := len(row) * p.qBits[i] / 8
			if err := unpackAdd(body[off:off+n], row, uint(p.qBits[i]), q); err != nil {
				d.undo(body, j, i)
				return fmt.Errorf("share polynomial %d: %w", j, err)
			}
			off += n
		}
	}
	d.got[s.Party] = true
	return nil
}

// undo subtracts the rows of a wire share added before row (j, i).
func (d *Decryption) undo(body []byte, j, i int) {
	p := d.params
	rq := p.fhe.RingQ()
	tmp := make([]uint64, p.fhe.N())
	for jj := 0; jj <= j; jj++ {
		off := jj * p.polyBytes
		for ii, s := range rq.SubRings {
			n := len(tmp) * p.qBits[ii] / 8
			if jj == j && ii >= i {
				return
			}
			_ = unpack(body[off:off+n], tmp, uint(p.qBits[ii]), s.Modulus)
			row := d.acc[jj].Coeffs[ii]
			for k := range row {
				row[k] = subMod(row[k], tmp[k], s.Modulus)
			}
			off += n
		}
	}
}

// Missing lists the active parties whose shares have not arrived.
func (d *Decryption) Missing() []PartyID {
	var m []PartyID
	for _, id := range d.active {
		if !d.got[id] {
			m = append(m, id)
		}
	}
	return m
}

// Sum decodes the weighted sum (sum of weight*value over contributions).
func (d *Decryption) Sum() ([]float64, error) { return d.decode(1) }

// Average decodes the weighted average: the weighted sum divided by the total
// weight, applied to the decoding scale so it costs nothing extra.
func (d *Decryption) Average() ([]float64, error) { return d.decode(d.agg.weight) }

func (d *Decryption) decode(divisor float64) ([]float64, error) {
	if m := d.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("%w: have %d of %d, missing %v", ErrNotEnoughShares, len(d.active)-len(m), len(d.active), m)
	}
	return d.params.decodePolys(d.acc, d.agg.length, divisor, publishGrid), nil
}

// decodePolys turns NTT-domain plaintexts into values divided by
// scale*divisor, rounded to multiples of 1/grid (grid 0: not rounded).
func (p Params) decodePolys(polys []ring.Poly, length int, divisor, grid float64) []float64 {
	rq := p.fhe.RingQ()
	dec := newDecoder(p.fhe.Q(), rq.BRedConstants())
	out := make([]float64, length)
	inv := 1 / (p.scale * divisor)
	tmp := rq.NewPoly()
	n := p.fhe.N()
	invGrid := 0.0
	if grid != 0 {
		invGrid = 1 / grid
	}
	for j, pol := range polys {
		rq.INTT(pol, tmp)
		chunk := out[j*n : min((j+1)*n, length)]
		r0 := tmp.Coeffs[0]
		var r1 []uint64
		if len(tmp.Coeffs) > 1 {
			r1 = tmp.Coeffs[1]
		}
		for k := range chunk {
			var b uint64
			if r1 != nil {
				b = r1[k]
			}
			x := dec.value(r0[k], b) * inv
			if grid != 0 {
				x = math.Round(x*grid) * invGrid
			}
			chunk[k] = x
		}
	}
	return out
}
