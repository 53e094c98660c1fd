package coordinator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/medfed/medfed/aggregation"
	"github.com/medfed/medfed/crypto/he"
	"github.com/medfed/medfed/internal/blobstore"
	"github.com/medfed/medfed/internal/pb"
)

// drive runs on every node and acts only while the node leads (but for a follower
// recording its own gRPC address, recordSelf): it records the nodes' gRPC addresses,
// opens rounds, seals or aborts them, starts collective decryption and publishes the new
// model. Every decision is read back from the FSM, so a new leader resumes
// wherever the old one stopped; the FSM refuses a second publication of a round.
func (n *Node) drive(ctx context.Context) {
	t := time.NewTicker(n.cfg.DriverInterval)
	defer t.Stop()
	addrsRecorded, selfRecorded := false, false
	for {
		ch, _ := n.fsm.Changed()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ch:
		case <-n.raft.LeaderCh():
		}
		if n.raft.State() != raft.Leader {
			addrsRecorded = false
			if !selfRecorded {
				selfRecorded = n.recordSelf(ctx)
			}
			continue
		}
		if !addrsRecorded {
			// A new leader first applies everything committed before it took over.
			if err := n.leaderUpToDate(); err != nil {
				continue
			}
			addrsRecorded = n.recordAddrs(ctx) == nil
		}
		for _, a := range n.fsm.pendingActions() {
			if ctx.Err() != nil || n.raft.State() != raft.Leader {
				break
			}
			if err := n.step(ctx, a); err != nil {
				n.log.Warn("round step failed", "federation", a.fed, "round", a.round, "err", err)
			}
		}
	}
}

// recordAddrs commits the gRPC addresses of the configured peers that the FSM lacks or
// holds otherwise, and this node's own (advertisedAddr).
func (n *Node) recordAddrs(ctx context.Context) error {
	have := n.fsm.NodeAddrs()
	want := map[string]string{}
	for _, p := range n.cfg.Peers {
		if p.GRPCAddr != "" {
			want[p.ID] = p.GRPCAddr
		}
	}
	if a := n.advertisedAddr(have); a != "" {
		want[n.cfg.NodeID] = a
	}
	for id, addr := range want {
		if have[id] == addr {
			continue
		}
		if err := n.recordAddr(ctx, id, addr); err != nil {
			return err
		}
	}
	return nil
}

// recordAddr commits gRPC address addr for node id ("" records the node as known, with no
// address).
func (n *Node) recordAddr(ctx context.Context, id, addr string) error {
	_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_SetNodeAddr{SetNodeAddr: &pb.SetNodeAddrCmd{Id: id, GrpcAddr: addr}}})
	return err
}

// recordSelf commits, through the leader, this follower's gRPC address if the FSM holds
// none for it: a cluster started without --grpc-peers knows its followers by their Raft
// addresses only, and the leader could neither ask them whether they are up (RemoveNode's
// quorum check) nor fetch blobs from them. It reports whether that is done, or there is
// nothing to record; it tries for at most 2 s at a time, so that a node that becomes the
// leader meanwhile soon goes on to lead.
func (n *Node) recordSelf(ctx context.Context) bool {
	if n.fsm.NodeAddrs()[n.cfg.NodeID] != "" {
		return true
	}
	if _, leader := n.raft.LeaderWithID(); leader == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// Decide on what the cluster has committed, not on the part of the log this node has
	// applied so far: the address AddNode recorded for a joining node, or one recorded
	// before a restart, may still be on its way.
	if err := n.upToDate(ctx); err != nil {
		return false
	}
	have := n.fsm.NodeAddrs()
	a := n.advertisedAddr(have)
	if have[n.cfg.NodeID] != "" || a == "" {
		return true
	}
	if err := n.recordAddr(ctx, n.cfg.NodeID, a); err != nil {
		n.log.Debug("recording this node's gRPC address", "err", err)
		return false
	}
	return true
}

// advertisedAddr returns the gRPC address at which the other nodes should reach this one,
// given the recorded ones: its entry in the peer list (--grpc-peers) if it has one, else
// the recorded one (AddNode's), else the address it listens on unless that is every
// interface (0.0.0.0 or [::], which would lead another host to itself); else "".
func (n *Node) advertisedAddr(have map[string]string) string {
	for _, p := range n.cfg.Peers {
		if p.ID == n.cfg.NodeID && p.GRPCAddr != "" {
			return p.GRPCAddr
		}
	}
	if a := have[n.cfg.NodeID]; a != "" {
		return a
	}
	if addr := n.GRPCAddr(); CheckPeerAddr(addr) == nil {
		return addr
	}
	return ""
}

func (n *Node) step(ctx context.Context, a action) error {
	now := time.Now()
	switch a.kind {
	case actOpen:
		timeout := n.cfg.RoundTimeout
		if a.timeout > 0 {
			timeout = time.Duration(a.timeout) * time.Millisecond
		}
		_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_OpenRound{OpenRound: &pb.OpenRoundCmd{
			Federation: a.fed, Round: a.round, ModelVersion: a.version, Selected: a.selected,
			DeadlineUnixNano: now.Add(timeout).UnixNano(),
		}}})
		if err == nil {
			n.log.Info("round opened", "federation", a.fed, "round", a.round, "model_version", a.version, "selected", len(a.selected))
		}
		return err
	case actSealOrAbort:
		switch {
		case a.allIn || (now.UnixNano() >= a.deadline && a.contributions >= a.minClients):
			_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_SealRound{SealRound: &pb.SealRoundCmd{Federation: a.fed, Round: a.round}}})
			if err == nil {
				n.log.Info("round sealed", "federation", a.fed, "round", a.round, "contributions", a.contributions)
			}
			return err
		case now.UnixNano() >= a.deadline:
			return n.abort(ctx, a.fed, a.round, fmt.Sprintf("deadline passed with %d contributions, min_clients is %d", a.contributions, a.minClients))
		}
		return nil
	case actStartDecryption:
		_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_StartDecryption{StartDecryption: &pb.StartDecryptionCmd{
			Federation: a.fed, Round: a.round, ActiveParties: a.active,
		}}})
		return err
	case actPublish:
		return n.publish(ctx, a.fed, a.round)
	case actAggregate:
		return n.aggregate(ctx, a.fed, a.round)
	case actCeremonyDeadline:
		return n.ceremonyDeadline(ctx, a, now)
	case actFinish:
		_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_FinishFederation{FinishFederation: &pb.FinishFederationCmd{Federation: a.fed, Reason: a.reason}}})
		if err == nil {
			n.log.Info("federation done", "federation", a.fed, "reason", a.reason)
		}
		return err
	case actReselect:
		if now.UnixNano() < a.started+n.cfg.DecryptionTimeout.Nanoseconds() {
			return nil
		}
		active, silent, ok := reselect(a)
		if !ok {
			return n.abort(ctx, a.fed, a.round, fmt.Sprintf(
				"decryption stalled: parties %v did not send decryption shares within %v, leaving %d responsive contributors of %d; threshold is %d",
				silent, n.cfg.DecryptionTimeout, len(a.contributors)-len(silent), len(a.contributors), a.threshold))
		}
		aggD, aggHE, err := n.rerandomize(ctx, a.fed, a.round)
		if err != nil {
			return err
		}
		_, err = n.propose(ctx, &pb.Command{Cmd: &pb.Command_StartDecryption{StartDecryption: &pb.StartDecryptionCmd{
			Federation: a.fed, Round: a.round, ActiveParties: active, AggregateSha256: aggD[:], AggregateHeDigest: aggHE[:],
		}}})
		if err == nil {
			n.log.Warn("decryption restarted with a new active set", "federation", a.fed, "round", a.round,
				"silent", silent, "active", active, "timeout", n.cfg.DecryptionTimeout)
		}
		return err
	}
	return nil
}

// reselect picks the next active set of a decrypting round whose shares stopped
// arriving: the parties of the current set that did not answer join the excluded ones
// (silent, sorted), and the new set is t of the remaining contributors, those that
// answered first (they were online moments ago), then the others in roster order. ok is
// false when fewer than t remain.
func reselect(a action) (active, silent []uint32, ok bool) {
	silent = slices.Clone(a.excluded)
	for _, p := range a.active {
		if !slices.Contains(a.answered, p) && !slices.Contains(silent, p) {
			silent = append(silent, p)
		}
	}
	slices.Sort(silent)
	active = slices.Clone(a.answered)
	for _, p := range a.contributors {
		if len(active) == a.threshold {
			break
		}
		if !slices.Contains(silent, p) && !slices.Contains(active, p) {
			active = append(active, p)
		}
	}
	if len(active) < a.threshold {
		return nil, silent, false
	}
	return active, silent, true
}

// ceremonyDeadline acts on a secure federation whose key ceremony is still incomplete its
// ceremony timeout (the federation's, or Config.CeremonyTimeout) after it started: if
// enough hospitals took part (at least min_clients and the threshold), the ceremony
// starts again with just them; otherwise the federation stops, naming who is missing.
func (n *Node) ceremonyDeadline(ctx context.Context, a action, now time.Time) error {
	timeout := n.cfg.CeremonyTimeout
	if a.timeout > 0 {
		timeout = time.Duration(a.timeout) * time.Millisecond
	}
	if now.UnixNano() < a.started+timeout.Nanoseconds() {
		return nil
	}
	st, ok := n.fsm.stalledCeremony(a.fed)
	if !ok {
		return nil // completed (or stopped) since the action was listed
	}
	waited := timeout.Round(time.Second)
	stalled := "the key ceremony is not complete: waiting for " + st.waitingFor
	if len(st.present) >= st.need && len(st.present) < st.members {
		reason := fmt.Sprintf("%s after %v; the ceremony starts again with the %d hospitals present", stalled, waited, len(st.present))
		_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_RestartCeremony{RestartCeremony: &pb.RestartCeremonyCmd{
			Federation: a.fed, Members: st.present, Reason: reason}}})
		if err == nil {
			n.log.Warn("key ceremony restarted", "federation", a.fed, "members", st.present, "reason", reason)
		}
		return err
	}
	const next = "bring the missing hospitals back and run medfed federation resume, or create the federation again without them"
	reason := fmt.Sprintf("%s, %v after the ceremony started, and %d hospitals present are fewer than the %d a round needs; %s",
		stalled, waited, len(st.present), st.need, next)
	if len(st.present) >= st.members {
		reason = fmt.Sprintf("%s, %v after the ceremony started; run medfed federation resume to give it another ceremony_timeout", stalled, waited)
	}
	_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_StopFederation{StopFederation: &pb.StopFederationCmd{Federation: a.fed, Reason: reason}}})
	if err == nil {
		n.log.Warn("federation stopped", "federation", a.fed, "reason", reason)
	}
	return err
}

func (n *Node) abort(ctx context.Context, fed string, r uint64, reason string) error {
	_, err := n.propose(ctx, &pb.Command{Cmd: &pb.Command_AbortRound{AbortRound: &pb.AbortRoundCmd{Federation: fed, Round: r, Reason: reason}}})
	if err == nil {
		n.log.Warn("round aborted", "federation", fed, "round", r, "reason", reason)
	}
	return err
}

// publish computes the round's model and commits it.
func (n *Node) publish(ctx context.Context, fed string, r uint64) error {
	p, err := n.fsm.publicationInput(fed, r)
	if err != nil {
		return err
	}
	mean, err := roundMean(p, func(d blobstore.Digest) ([]byte, error) { return n.blob(ctx, d) })
	if err != nil {
		if errors.Is(err, aggregation.ErrTooFewUpdates) || errors.Is(err, aggregation.ErrParameter) {
			return n.abort(ctx, fed, r, err.Error())
		}
		return err
	}
	var opt aggregation.ServerOptimizer
	if len(p.optState) > 0 {
		if err := opt.UnmarshalBinary(p.optState); err != nil {
			return err
		}
	} else {
		o, err := aggregation.NewServerOptimizer(aggregation.ServerConfig{Name: p.strategy.Optimizer, LR: p.spec.ServerLr}, p.numParams)
		if err != nil {
			return n.abort(ctx, fed, r, err.Error())
		}
		opt = *o
	}
	if err := opt.Apply(p.global, mean); err != nil {
		return n.abort(ctx, fed, r, err.Error())
	}
	state, err := opt.MarshalBinary()
	if err != nil {
		return err
	}
	data := append(EncodeFloat32s(p.global), state...)
	digest := sha(data)
	key := modelBlobKey(fed, r, digest)
	if err := n.stageBlob(ctx, key, data, digest); err != nil {
		return err
	}
	_, err = n.propose(ctx, &pb.Command{Cmd: &pb.Command_PublishModel{PublishModel: &pb.PublishModelCmd{
		Federation: fed, Round: r, Version: p.version, Blob: key, Digest: digest, NumParams: uint64(p.numParams),
	}}})
	if err == nil {
		n.metrics.published.Add(1)
		n.log.Info("model published", "federation", fed, "round", r, "version", p.version)
	}
	return err
}

// aggregate computes the encrypted sum of a sealed secure round from its contributions'
// blobs (fetching from peers those this node lacks) and commits it.
func (n *Node) aggregate(ctx context.Context, fed string, r uint64) error {
	in, err := n.fsm.aggregationInput(fed, r)
	if err != nil {
		return err
	}
	sum, err := aggregation.NewEncryptedSum(in.params, in.numParams)
	if err != nil {
		return err
	}
	for _, c := range in.contribs {
		data, err := n.blob(ctx, c.digest)
		if err != nil {
			return fmt.Errorf("contribution of %q: %w", c.client, err)
		}
		if err := sum.Add(aggregation.EncryptedUpdate{Client: c.client, Data: data, Samples: int(c.samples)}); err != nil {
			// Checked when it was accepted; a failure here is a bug or a corrupted store.
			return n.abort(ctx, fed, r, err.Error())
		}
	}
	v, err := sum.Vector()
	if err != nil {
		return n.abort(ctx, fed, r, err.Error())
	}
	data, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	d, err := n.storeReplicated(ctx, data)
	if err != nil {
		return err
	}
	hd := v.Digest()
	_, err = n.propose(ctx, &pb.Command{Cmd: &pb.Command_SetAggregate{SetAggregate: &pb.SetAggregateCmd{
		Federation: fed, Round: r, Digest: d[:], HeDigest: hd[:], Contributions: uint32(v.Contributions()), Weight: v.Weight(),
	}}})
	if err == nil {
		n.log.Info("round aggregated", "federation", fed, "round", r, "contributions", len(in.contribs))
	}
	return err
}

// rerandomize makes the aggregate a decrypting round's next active set decrypts: the
// current one plus a fresh encryption of zero (he.Vector.Rerandomize), seeded from the
// round and how often it was rerandomised, so a leader that retries makes the same
// ciphertext. It stores it on a majority and returns its digests.
func (n *Node) rerandomize(ctx context.Context, fed string, r uint64) (blobstore.Digest, [32]byte, error) {
	in, err := n.fsm.reselectInput(fed, r)
	if err != nil {
		return blobstore.Digest{}, [32]byte{}, err
	}
	data, err := n.blob(ctx, in.agg)
	if err != nil {
		return blobstore.Digest{}, [32]byte{}, fmt.Errorf("aggregate: %w", err)
	}
	v, err := he.DecodeVector(in.params, data)
	if err != nil {
		return blobstore.Digest{}, [32]byte{}, err
	}
	seed := sha256.New()
	fmt.Fprintf(seed, "medfed/coordinator/rerandomize/v2\x00%s\x00%d\x00%d\x00", fed, r, in.reselections+1)
	seed.Write(in.agg[:])
	if err := v.Rerandomize(in.pk, [32]byte(seed.Sum(nil))); err != nil {
		return blobstore.Digest{}, [32]byte{}, err
	}
	out, err := v.MarshalBinary()
	if err != nil {
		return blobstore.Digest{}, [32]byte{}, err
	}
	d, err := n.storeReplicated(ctx, out)
	return d, v.Digest(), err
}

// roundMean is the round's aggregated update: the weighted mean of the deltas, a robust
// aggregate, or the decrypted weighted average. load reads a plaintext contribution's blob.
func roundMean(p *publication, load func(blobstore.Digest) ([]byte, error)) ([]float32, error) {
	mean := make([]float32, p.numParams)
	if p.params != nil {
		aggb, err := load(p.enc)
		if err != nil {
			return nil, fmt.Errorf("aggregate: %w", err)
		}
		agg, err := he.DecodeVector(*p.params, aggb)
		if err != nil {
			return nil, err
		}
		d, err := he.NewDecryption(*p.params, p.group, agg, p.active)
		if err != nil {
			return nil, err
		}
		for _, sd := range p.shares {
			sb, err := load(sd)
			if err != nil {
				return nil, fmt.Errorf("decryption share: %w", err)
			}
			if err := d.AddShareBinary(sb); err != nil {
				return nil, err
			}
		}
		avg, err := d.Average()
		if err != nil {
			return nil, err
		}
		for i := range mean {
			mean[i] = float32(avg[i])
		}
		return mean, nil
	}
	// Plaintext: the deltas, read one at a time; the robust aggregators need them all.
	var updates []aggregation.Update
	var sum []float64
	for _, c := range p.contribs {
		data, err := load(c.digest)
		if err != nil {
			return nil, fmt.Errorf("contribution of %q: %w", c.client, err)
		}
		delta, err := DecodeFloat32s(data)
		if err != nil {
			return nil, err
		}
		if len(delta) != p.numParams {
			return nil, fmt.Errorf("%w: contribution of %q has %d values, the model %d", aggregation.ErrParameter, c.client, len(delta), p.numParams)
		}
		if p.strategy.Aggregator != aggregation.AggregatorWeightedMean {
			updates = append(updates, aggregation.Update{Client: c.client, Delta: delta, Samples: int(c.samples)})
			continue
		}
		if sum == nil {
			sum = make([]float64, p.numParams)
		}
		w := float64(c.samples)
		for i, d := range delta {
			// The explicit conversion forbids fusing into an FMA, so a new leader that
			// recomputes the round on another architecture rounds the same way.
			sum[i] += float64(w * float64(d))
		}
	}
	switch p.strategy.Aggregator {
	case aggregation.AggregatorWeightedMean:
		if p.total == 0 || len(sum) != p.numParams {
			return nil, fmt.Errorf("%w: round has no samples", aggregation.ErrNoUpdates)
		}
		for i, s := range sum {
			mean[i] = float32(s / float64(p.total))
		}
		return mean, nil
	case aggregation.AggregatorMedian:
		return aggregation.Median(updates)
	case aggregation.AggregatorTrimmedMean:
		beta := p.spec.TrimmedBeta
		if beta == 0 {
			beta = 0.1
		}
		return aggregation.TrimmedMean(updates, beta)
	case aggregation.AggregatorKrum:
		m := int(p.spec.KrumM)
		if m == 0 {
			m = 1
		}
		v, _, err := aggregation.Krum(updates, int(p.spec.KrumF), m)
		return v, err
	}
	return nil, fmt.Errorf("%w: aggregator %q", aggregation.ErrUnknownStrategy, p.strategy.Aggregator)
}
