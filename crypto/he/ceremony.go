package he

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Seed is the common random seed of a key ceremony. It expands into the
// common reference polynomial of the public key. It is the hash of one secret
// nonce per party, committed to before any is revealed, so no single party
// (and not the coordinator) chooses it: one honest party's nonce makes it
// uniform.
type Seed [32]byte

// SeedCommitment is a party's commitment to its seed nonce (ceremony step 1).
type SeedCommitment struct {
	Party  PartyID
	Digest [32]byte
	params Params
}

// SeedReveal opens a party's commitment (ceremony step 2). A party reveals
// only after every commitment has been published.
type SeedReveal struct {
	Party  PartyID
	Nonce  [32]byte
	params Params
}

func commitDigest(p Params, id PartyID, nonce [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("medfed/he/seed-commitment/v1\x00"))
	h.Write(p.fingerprint[:])
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(id)))
	h.Write(nonce[:])
	return [32]byte(h.Sum(nil))
}

// JointSeed computes the ceremony seed from the group's commitments and
// reveals; it fails unless every member committed and revealed a matching
// nonce. Ceremony calls it; it is exported so that every party can recompute
// the seed the coordinator announces.
func JointSeed(p Params, g Group, commits []SeedCommitment, reveals []SeedReveal) (Seed, error) {
	g, err := g.canonical(p)
	if err != nil {
		return Seed{}, err
	}
	cm := make(map[PartyID][32]byte, len(commits))
	for _, c := range commits {
		cm[c.Party] = c.Digest
	}
	rm := make(map[PartyID][32]byte, len(reveals))
	for _, r := range reveals {
		rm[r.Party] = r.Nonce
	}
	h := sha256.New()
	h.Write([]byte("medfed/he/seed/v1\x00"))
	h.Write(p.fingerprint[:])
	for _, id := range g.Parties {
		c, ok := cm[id]
		if !ok {
			return Seed{}, fmt.Errorf("%w: no seed commitment from party %d", ErrCeremonyState, id)
		}
		r, ok := rm[id]
		if !ok {
			return Seed{}, fmt.Errorf("%w: no seed reveal from party %d", ErrCeremonyState, id)
		}
		if commitDigest(p, id, r) != c {
			return Seed{}, fmt.Errorf("%w: party %d", ErrCommitment, id)
		}
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(id)))
		h.Write(r[:])
	}
	return Seed(h.Sum(nil)), nil
}

func (p Params) crp(seed Seed) (mhe.PublicKeyGenProtocol, mhe.PublicKeyGenCRP) {
	proto := mhe.NewPublicKeyGenProtocol(p.fhe)
	prng, err := sampling.NewKeyedPRNG(seed[:])
	if err != nil {
		panic(fmt.Sprintf("he: keyed prng: %v", err)) // blake2b accepts any 32-byte key
	}
	return proto, proto.SampleCRP(prng)
}

// PublicKeyShare is a party's share of the collective public key (ceremony
// step 3): -a*s_i + e_i for the common polynomial a expanded from the seed.
type PublicKeyShare struct {
	Party  PartyID
	Seed   Seed
	share  mhe.PublicKeyGenShare
	raw    []byte
	params Params
}

// PublicKey is the collective public key: encryptions under it decrypt only
// with the secret s = sum of all parties' secrets, which no one holds.
type PublicKey struct {
	Seed   Seed
	pk     *rlwe.PublicKey
	params Params
}

// ThresholdShare is party From's Shamir share of its secret for party To
// (ceremony step 4). It is secret: send it inside a seal envelope addressed to
// To; the coordinator only relays it.
type ThresholdShare struct {
	From, To PartyID
	share    mhe.ShamirSecretShare
	params   Params
}

// Ceremony is the coordinator's side of the key ceremony: it collects seed
// commitments, then reveals, then public-key shares, and outputs the
// collective public key. It sees nothing secret. Steps must come in that
// order; resending an identical message is accepted, a different one from the
// same party is ErrDuplicate. A Ceremony is not safe for concurrent use.
type Ceremony struct {
	params  Params
	group   Group
	commits map[PartyID]SeedCommitment
	reveals map[PartyID]SeedReveal
	seed    *Seed
	proto   mhe.PublicKeyGenProtocol
	crp     mhe.PublicKeyGenCRP
	agg     mhe.PublicKeyGenShare
	shares  map[PartyID][32]byte
}

// NewCeremony starts a ceremony for group g.
func NewCeremony(p Params, g Group) (*Ceremony, error) {
	g, err := g.canonical(p)
	if err != nil {
		return nil, err
	}
	return &Ceremony{
		params:  p,
		group:   g,
		commits: make(map[PartyID]SeedCommitment),
		reveals: make(map[PartyID]SeedReveal),
		shares:  make(map[PartyID][32]byte),
	}, nil
}

// AddCommitment records a party's seed commitment.
func (c *Ceremony) AddCommitment(sc SeedCommitment) error {
	if !c.group.has(sc.Party) {
		return fmt.Errorf("%w: commitment from party %d", ErrUnknownParty, sc.Party)
	}
	old, ok := c.commits[sc.Party]
	if ok && old.Digest == sc.Digest {
		return nil // resent (its acknowledgement was lost): recorded already, at any stage
	}
	if len(c.reveals) > 0 {
		return fmt.Errorf("%w: commitment from party %d after reveals started", ErrCeremonyState, sc.Party)
	}
	if ok {
		return fmt.Errorf("%w: second seed commitment from party %d", ErrDuplicate, sc.Party)
	}
	c.commits[sc.Party] = sc
	return nil
}

// CommitmentsComplete reports whether every party has committed, after which
// parties may reveal.
func (c *Ceremony) CommitmentsComplete() bool { return len(c.commits) == len(c.group.Parties) }

// AddReveal records a party's nonce once all commitments are in, and checks it
// against the party's commitment.
func (c *Ceremony) AddReveal(sr SeedReveal) error {
	if !c.group.has(sr.Party) {
		return fmt.Errorf("%w: reveal from party %d", ErrUnknownParty, sr.Party)
	}
	if !c.CommitmentsComplete() {
		return fmt.Errorf("%w: reveal from party %d before all %d commitments (have %d)",
			ErrCeremonyState, sr.Party, len(c.group.Parties), len(c.commits))
	}
	if commitDigest(c.params, sr.Party, sr.Nonce) != c.commits[sr.Party].Digest {
		return fmt.Errorf("%w: party %d", ErrCommitment, sr.Party)
	}
	c.reveals[sr.Party] = sr
	return nil
}

// Seed returns the joint seed once every party has revealed.
func (c *Ceremony) Seed() (Seed, error) {
	if c.seed != nil {
		return *c.seed, nil
	}
	commits := make([]SeedCommitment, 0, len(c.commits))
	for _, sc := range c.commits {
		commits = append(commits, sc)
	}
	reveals := make([]SeedReveal, 0, len(c.reveals))
	for _, sr := range c.reveals {
		reveals = append(reveals, sr)
	}
	seed, err := JointSeed(c.params, c.group, commits, reveals)
	if err != nil {
		return Seed{}, err
	}
	c.seed = &seed
	c.proto, c.crp = c.params.crp(seed)
	c.agg = c.proto.AllocateShare()
	return seed, nil
}

// AddPublicKeyShare aggregates one party's public-key share.
func (c *Ceremony) AddPublicKeyShare(s *PublicKeyShare) error {
	if c.seed == nil {
		if _, err := c.Seed(); err != nil {
			return fmt.Errorf("public key share before the seed: %w", err)
		}
	}
	if !c.group.has(s.Party) {
		return fmt.Errorf("%w: public key share from party %d", ErrUnknownParty, s.Party)
	}
	if s.Seed != *c.seed {
		return fmt.Errorf("%w: public key share from party %d is for seed %x, expected %x",
			ErrCeremonyState, s.Party, s.Seed[:4], c.seed[:4])
	}
	raw, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	if old, ok := c.shares[s.Party]; ok {
		if old != sum {
			return fmt.Errorf("%w: second, different public key share from party %d", ErrDuplicate, s.Party)
		}
		return nil
	}
	c.proto.AggregateShares(c.agg, s.share, &c.agg)
	c.shares[s.Party] = sum
	return nil
}

// PublicKey returns the collective public key once every party's share is in.
func (c *Ceremony) PublicKey() (*PublicKey, error) {
	if c.seed == nil || len(c.shares) != len(c.group.Parties) {
		return nil, fmt.Errorf("%w: public key needs %d shares, have %d",
			ErrCeremonyState, len(c.group.Parties), len(c.shares))
	}
	pk := rlwe.NewPublicKey(c.params.fhe)
	c.proto.GenPublicKey(c.agg, c.crp, pk)
	return &PublicKey{Seed: *c.seed, pk: pk, params: c.params}, nil
}

func randomBytes32() [32]byte {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("he: crypto/rand: %v", err)) // crypto/rand.Read does not fail on supported platforms
	}
	return b
}

func sortedKeys[V any](m map[PartyID]V) []PartyID {
	keys := make([]PartyID, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

type ringqpPoly = ringqp.Poly

func newSecretKey(p Params, s mhe.ShamirSecretShare) *rlwe.SecretKey {
	sk := rlwe.NewSecretKey(p.fhe)
	sk.Value.Q.Copy(s.Q)
	return sk
}
