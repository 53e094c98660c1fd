package he

import (
	"fmt"
	"slices"
)

// PartyID identifies a hospital within a group. It is also the party's Shamir
// public point, so it must be non-zero and distinct within the group; the
// roster order (1, 2, ...) is a natural choice.
type PartyID uint32

// Group is the roster of a key ceremony and its decryption threshold: any
// Threshold of the Parties can decrypt an aggregate, fewer cannot.
type Group struct {
	Parties   []PartyID
	Threshold int
}

// canonical validates g against p and returns a copy with sorted parties.
func (g Group) canonical(p Params) (Group, error) {
	n := len(g.Parties)
	if n < 1 || n > p.profile.MaxParties {
		return Group{}, fmt.Errorf("%w: expected 1 to %d parties, got %d", ErrInvalidGroup, p.profile.MaxParties, n)
	}
	if g.Threshold < 1 || g.Threshold > n {
		return Group{}, fmt.Errorf("%w: threshold must be in [1, %d], got %d", ErrInvalidGroup, n, g.Threshold)
	}
	parties := slices.Clone(g.Parties)
	slices.Sort(parties)
	for i, id := range parties {
		if id == 0 {
			return Group{}, fmt.Errorf("%w: party id 0 is not allowed", ErrInvalidGroup)
		}
		if i > 0 && parties[i-1] == id {
			return Group{}, fmt.Errorf("%w: party %d listed twice", ErrInvalidGroup, id)
		}
	}
	return Group{Parties: parties, Threshold: g.Threshold}, nil
}

func (g Group) has(id PartyID) bool {
	_, ok := slices.BinarySearch(g.Parties, id)
	return ok
}

// activeSet validates a decryption set: exactly Threshold distinct members.
// It returns a sorted copy, the canonical order every party uses.
func (g Group) activeSet(active []PartyID) ([]PartyID, error) {
	if len(active) != g.Threshold {
		return nil, fmt.Errorf("%w: expected exactly %d parties, got %d", ErrActiveSet, g.Threshold, len(active))
	}
	set := slices.Clone(active)
	slices.Sort(set)
	for i, id := range set {
		if !g.has(id) {
			return nil, fmt.Errorf("%w: party %d is not in the group", ErrUnknownParty, id)
		}
		if i > 0 && set[i-1] == id {
			return nil, fmt.Errorf("%w: party %d listed twice", ErrActiveSet, id)
		}
	}
	return set, nil
}
