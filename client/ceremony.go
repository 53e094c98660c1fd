package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/crypto/seal"
	"github.com/medfed/medfed/internal/pb"
)

// envelopeLabel names what a threshold-share envelope carries; Open returns it signed.
func envelopeLabel(fed string) string { return "medfed/he/threshold-share/" + fed }

// ceremony restores or creates this node's he.Party and takes it through the key
// ceremony up to the collective public key, then sends its threshold shares. Every step
// is resumable: the party is saved before any message derived from it leaves, and the
// coordinator's ceremony status says which steps are done.
func (n *Node) ceremony(ctx context.Context) error {
	for {
		err := n.ceremonyOnce(ctx)
		if !errors.Is(err, errCeremonyRestarted) {
			return err
		}
	}
}

// errCeremonyRestarted reports that the coordinator started the key ceremony again (with
// fewer hospitals) while this node took part.
var errCeremonyRestarted = errors.New("the key ceremony was restarted")

// joinCeremony reads the ceremony status and adopts its generation: the group is its
// members; a generation this node has not seen discards the party of the earlier one (no
// key was made from it). A hospital left out of a restarted ceremony stops here.
func (n *Node) joinCeremony(ctx context.Context) (*pb.CeremonyStatus, error) {
	for {
		st, err := n.c.Ceremony(ctx, n.cfg.Federation)
		if err == nil {
			if !slices.Contains(st.Members, n.cfg.ClientID) {
				return nil, fmt.Errorf("%w: this hospital is not in the key ceremony: it started again without it because %s", ErrFederation, st.RestartedBecause)
			}
			n.group = groupOf(n.spec, st.Members)
			if st.Generation != n.state.CeremonyGen {
				n.log.Warn("the key ceremony started again without some hospitals", "members", st.Members, "because", st.RestartedBecause)
				n.state.CeremonyGen, n.state.Party, n.state.ThresholdSent = st.Generation, nil, false
				if err := n.save(); err != nil {
					return nil, err
				}
			}
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n.log.Warn("reading the key ceremony", "err", err)
		if err := sleep(ctx, n.cfg.PollInterval); err != nil {
			return nil, err
		}
	}
}

// groupOf is the he.Group of a ceremony's members; a party's ID is its roster position.
func groupOf(spec *pb.FederationSpec, members []string) he.Group {
	g := he.Group{Threshold: int(spec.Threshold)}
	for _, m := range members {
		g.Parties = append(g.Parties, he.PartyID(slices.Index(spec.Clients, m)+1))
	}
	return g
}

func (n *Node) ceremonyOnce(ctx context.Context) error {
	me := he.PartyID(n.state.PartyID)
	st0, err := n.joinCeremony(ctx)
	if err != nil {
		return err
	}
	if n.state.Party != nil {
		if n.party, err = he.RestoreParty(n.params, n.group, n.state.Party); err != nil {
			return fmt.Errorf("%w: restoring the key share: %v", ErrState, err)
		}
		if n.party.ID() != me {
			return fmt.Errorf("%w: the saved key share is party %d, the enrolment says %d", ErrState, n.party.ID(), me)
		}
	} else {
		if n.party, err = he.NewParty(n.params, n.group, me); err != nil {
			return fmt.Errorf("%w: %v", ErrCeremony, err)
		}
		if err := n.saveParty(); err != nil {
			return err
		}
	}
	waiting := ""
	for {
		st, err := n.c.Ceremony(ctx, n.cfg.Federation)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n.log.Warn("reading the key ceremony", "err", err)
		} else if st.Generation != st0.Generation {
			return errCeremonyRestarted
		} else {
			done, step, err := n.ceremonyStep(ctx, st)
			if err != nil {
				return err
			}
			if done {
				break
			}
			if step != "" && step != waiting {
				n.log.Info("key ceremony", "waiting_for", step)
				waiting = step
			}
			if step == "" {
				continue // a message went out: read the status again at once
			}
			// Waiting on other hospitals: the coordinator stops the federation if they
			// do not come within its ceremony timeout.
			if fed, err := n.c.Federation(ctx, n.cfg.Federation); err == nil && fed.Stopped {
				return fmt.Errorf("%w: the federation stopped during the key ceremony: %s", ErrFederation, fed.StopReason)
			}
		}
		if err := sleep(ctx, n.cfg.PollInterval); err != nil {
			return err
		}
	}
	if !n.state.ThresholdSent {
		if err := n.sendThresholdShares(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) saveParty() error {
	b, err := n.party.MarshalBinary()
	if err != nil {
		return err
	}
	n.state.Party = b
	return n.save()
}

// ceremonyStep takes the next step the status allows. It reports done once the
// collective key is there and checked, or what it waits for ("" if it sent something).
func (n *Node) ceremonyStep(ctx context.Context, st *pb.CeremonyStatus) (bool, string, error) {
	me, all := n.cfg.ClientID, len(st.Members)
	send := func(step string, m interface{ MarshalBinary() ([]byte, error) }) (bool, string, error) {
		b, err := m.MarshalBinary()
		if err != nil {
			return false, "", err
		}
		if _, err := n.c.SubmitCeremony(ctx, step, &pb.CeremonyMessage{Federation: n.cfg.Federation, ClientId: me, Data: b}); err != nil {
			return false, "", fmt.Errorf("%w: sending the %s: %v", ErrCeremony, step, err)
		}
		return false, "", nil
	}
	switch {
	case st.Complete:
		pk, err := he.DecodePublicKey(n.params, st.CollectivePublicKey)
		if err != nil {
			return false, "", fmt.Errorf("%w: collective public key: %v", ErrCeremony, err)
		}
		seed, err := n.jointSeed(st)
		if err != nil {
			return false, "", err
		}
		if pk.Seed != seed {
			return false, "", fmt.Errorf("%w: the collective key was made from another seed than the parties' commitments give", ErrCeremony)
		}
		if !slices.Contains(st.PublicKeySharesFrom, me) {
			return false, "", fmt.Errorf("%w: the collective key lacks this hospital's share", ErrCeremony)
		}
		n.pk = pk
		n.log.Info("key ceremony complete")
		return true, "", nil
	case !slices.Contains(st.CommitmentsFrom, me):
		return send("commitment", n.party.SeedCommitment())
	case len(st.CommitmentsFrom) < all:
		return false, fmt.Sprintf("seed commitments (%d of %d)", len(st.CommitmentsFrom), all), nil
	case !slices.Contains(st.RevealsFrom, me):
		return send("reveal", n.party.SeedReveal())
	case len(st.RevealsFrom) < all:
		return false, fmt.Sprintf("seed reveals (%d of %d)", len(st.RevealsFrom), all), nil
	case !slices.Contains(st.PublicKeySharesFrom, me):
		seed, err := n.jointSeed(st)
		if err != nil {
			return false, "", err
		}
		s, err := n.party.PublicKeyShare(seed)
		if err != nil {
			return false, "", fmt.Errorf("%w: %v", ErrCeremony, err)
		}
		if err := n.saveParty(); err != nil {
			return false, "", err
		}
		return send("public-key-share", s)
	}
	return false, fmt.Sprintf("public-key shares (%d of %d)", len(st.PublicKeySharesFrom), all), nil
}

// jointSeed recomputes the ceremony seed from the published commitments and reveals.
func (n *Node) jointSeed(st *pb.CeremonyStatus) (he.Seed, error) {
	if len(st.Commitments) != len(st.Reveals) {
		return he.Seed{}, fmt.Errorf("%w: %d commitments and %d reveals", ErrCeremony, len(st.Commitments), len(st.Reveals))
	}
	var commits []he.SeedCommitment
	var reveals []he.SeedReveal
	for i := range st.Commitments {
		c, err := he.DecodeSeedCommitment(n.params, st.Commitments[i])
		if err != nil {
			return he.Seed{}, fmt.Errorf("%w: %v", ErrCeremony, err)
		}
		r, err := he.DecodeSeedReveal(n.params, st.Reveals[i])
		if err != nil {
			return he.Seed{}, fmt.Errorf("%w: %v", ErrCeremony, err)
		}
		commits, reveals = append(commits, c), append(reveals, r)
	}
	seed, err := he.JointSeed(n.params, n.group, commits, reveals)
	if err != nil {
		return he.Seed{}, fmt.Errorf("%w: %v", ErrCeremony, err)
	}
	return seed, nil
}

// sendThresholdShares seals this party's Shamir share for every other hospital and hands
// the envelopes to the coordinator.
func (n *Node) sendThresholdShares(ctx context.Context) error {
	fed, err := n.c.Federation(ctx, n.cfg.Federation)
	if err != nil {
		return err
	}
	type out struct {
		to    *pb.Enrolment
		share []byte
	}
	var outs []out
	members := fed.GetCeremony().GetMembers()
	for _, e := range fed.Enrolled {
		if e.ClientId == n.cfg.ClientID || !slices.Contains(members, e.ClientId) {
			continue
		}
		s, err := n.party.ThresholdShare(he.PartyID(e.PartyId))
		if err != nil {
			return fmt.Errorf("%w: threshold share for %q: %v", ErrCeremony, e.ClientId, err)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			return err
		}
		outs = append(outs, out{e, b})
	}
	if len(outs) != len(members)-1 {
		return fmt.Errorf("%w: %d other members enrolled, the key ceremony has %d", ErrCeremony, len(outs), len(members)-1)
	}
	// The Shamir polynomial is fixed now: save it before any share of it leaves.
	if err := n.saveParty(); err != nil {
		return err
	}
	for _, o := range outs {
		r, _, err := seal.ParseEnrolment(o.to.AgeRecipient)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrCeremony, o.to.ClientId, err)
		}
		env, err := seal.Seal(n.signer, o.to.ClientId, r, envelopeLabel(n.cfg.Federation), o.share)
		if err != nil {
			return err
		}
		err = n.c.SendEnvelope(ctx, &pb.Envelope{Federation: n.cfg.Federation, FromClient: n.cfg.ClientID, ToClient: o.to.ClientId, Sealed: env})
		// age encryption is randomised: after a restart the coordinator already holds an
		// envelope from us with the same share inside, sealed differently.
		if err != nil && !isAlreadyExists(err) {
			return fmt.Errorf("%w: sending the threshold share for %q: %v", ErrCeremony, o.to.ClientId, err)
		}
	}
	n.state.ThresholdSent = true
	n.log.Info("threshold shares sent", "to", len(outs))
	return n.save()
}

// collectThresholdShares opens the envelopes addressed to this node and adds their
// shares; the party can decrypt once it holds one from every other hospital.
func (n *Node) collectThresholdShares(ctx context.Context, fed *pb.Federation) error {
	envs, err := n.c.FetchEnvelopes(ctx, n.cfg.Federation, n.cfg.ClientID)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.log.Warn("fetching threshold shares", "err", err)
		return nil
	}
	keys := seal.Keys{}
	party := map[string]uint32{}
	for _, e := range fed.Enrolled {
		if _, k, err := seal.ParseEnrolment(e.AgeRecipient); err == nil {
			keys[e.ClientId] = k
		}
		party[e.ClientId] = e.PartyId
	}
	added := 0
	for _, e := range envs {
		l, err := seal.Open(e.Sealed, n.cfg.ClientID, n.envID, keys)
		if err != nil {
			return fmt.Errorf("%w: envelope from %q: %v", ErrCeremony, e.FromClient, err)
		}
		if l.From != e.FromClient || l.Label != envelopeLabel(n.cfg.Federation) {
			return fmt.Errorf("%w: envelope relayed as from %q holds %q from %q", ErrCeremony, e.FromClient, l.Label, l.From)
		}
		s, err := he.DecodeThresholdShare(n.params, l.Payload)
		if err != nil {
			return fmt.Errorf("%w: threshold share from %q: %v", ErrCeremony, e.FromClient, err)
		}
		if uint32(s.From) != party[l.From] || s.To != n.party.ID() {
			return fmt.Errorf("%w: threshold share from %q is from party %d to %d", ErrCeremony, l.From, s.From, s.To)
		}
		if err := n.party.AddThresholdShare(s); err != nil && !errors.Is(err, he.ErrDuplicate) {
			return fmt.Errorf("%w: threshold share from %q: %v", ErrCeremony, e.FromClient, err)
		}
		added++
	}
	if n.party.Ready() {
		n.log.Info("holding every threshold share; ready to decrypt", "shares", added)
		return n.saveParty()
	}
	return nil
}
