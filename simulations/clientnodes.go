package simulations

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/medfed/medfed/client"
	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/coordinator/coordclient"
	"github.com/medfed/medfed/dataset"
	"github.com/medfed/medfed/internal/pb"
	"github.com/medfed/medfed/model"
)

// useClientNodes reports whether every hospital of the scenario behaves as the MedFed
// client node does (honest, present in every round, noise from a secure source), so the
// simulation can run client.Node itself. Attacks, dropouts, partial participation and
// seeded DP noise need the simulation's own hospital, which speaks the same protocol.
func useClientNodes(cfg Config) bool {
	return cfg.Byzantine == 0 && cfg.Dropout == 0 && cfg.FractionFit == 1 && cfg.DPNoiseMultiplier == 0 && cfg.ClipNorm == 0
}

// runClientNodes runs one client.Node per hospital against the cluster, as hospitals do
// in a real study, and follows the rounds from the operator's side.
func runClientNodes(ctx context.Context, cfg Config, op *coordclient.Client, addrs []string, train, test *dataset.Set, parts [][]int, spec model.Spec, sum *Summary, hooks Hooks, stateDir string, t0 time.Time) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodes := make([]*client.Node, cfg.Clients)
	errs := make(chan error, cfg.Clients)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range nodes {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return 0, err
		}
		n, err := client.New(client.Config{
			Coordinators: addrs, ClientID: hospitalID(i), Federation: federationName,
			Data: client.Static(train.Subset(parts[i])), StateDir: filepath.Join(stateDir, hospitalID(i)),
			Insecure: true, AgeIdentity: id, ProximalMu: cfg.ProximalMu,
			Seed:         cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(i+1)<<20,
			PollInterval: 25 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			return 0, err
		}
		nodes[i] = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", hospitalID(i), err)
			}
		}()
	}
	var version uint64
	var opened time.Time
	for r := 1; r <= cfg.Rounds; r++ {
		m := RoundMetrics{Round: r}
		wait := func(ok func(pb.RoundState) bool) (*pb.RoundInfo, error) {
			type res struct {
				ri  *pb.RoundInfo
				err error
			}
			ch := make(chan res, 1)
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			go func() { ri, err := waitRound(wctx, op, uint64(r), ok); ch <- res{ri, err} }()
			select {
			case x := <-ch:
				return x.ri, x.err
			case err := <-errs:
				return nil, err
			}
		}
		if _, err := wait(func(s pb.RoundState) bool { return s != pb.RoundState_ROUND_STATE_UNSPECIFIED }); err != nil {
			return 0, err
		}
		if r == 1 {
			opened = time.Now()
			hooks.step("hospitals: %d client.Node instances enrolled%s", cfg.Clients, map[bool]string{true: " and ran the key ceremony", false: ""}[cfg.Secure])
			sum.SetupSeconds = time.Since(t0).Seconds()
		}
		start := opened
		ri, err := wait(func(s pb.RoundState) bool {
			return s == pb.RoundState_ROUND_STATE_DECRYPTING || s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
		})
		if err != nil {
			return 0, err
		}
		aggregated := time.Now()
		if ri.State == pb.RoundState_ROUND_STATE_DECRYPTING {
			if ri, err = wait(func(s pb.RoundState) bool {
				return s == pb.RoundState_ROUND_STATE_PUBLISHED || s == pb.RoundState_ROUND_STATE_ABORTED
			}); err != nil {
				return 0, err
			}
			m.Decrypt = time.Since(aggregated).Seconds()
		}
		if ri.State == pb.RoundState_ROUND_STATE_ABORTED {
			return 0, fmt.Errorf("round %d aborted: %s", r, ri.Reason)
		}
		opened = time.Now() // the next round opens right after this one is published
		m.Seconds = opened.Sub(start).Seconds()
		m.Selected, m.Contributors = len(ri.Selected), len(ri.Contributions)
		// The nodes' own reports; the share uploads may still be settling for a moment.
		var slowest float64
		for _, n := range nodes {
			for _, rep := range n.Reports() {
				if rep.Round != uint64(r) {
					continue
				}
				m.Train += rep.TrainSeconds
				m.Encrypt += rep.EncryptSeconds
				m.Upload += rep.UploadSeconds
				m.TrainLoss += rep.TrainLoss / float64(cfg.Clients)
				m.ClipMean += rep.ClipFactor / float64(cfg.Clients)
				m.UpBytes += int64(rep.UpdateBytes + rep.ShareBytes)
				slowest = max(slowest, rep.TrainSeconds+rep.EncryptSeconds)
			}
		}
		// Downloads: the model by every hospital, the aggregate by the active parties.
		m.DownBytes = int64(cfg.Clients) * int64(4*sum.Params)
		if cfg.Secure {
			m.DownBytes += int64(len(ri.ActiveParties)) * (m.UpBytes / int64(max(1, cfg.Clients)))
		}
		m.Aggregate = max(0, aggregated.Sub(start).Seconds()-slowest)

		_, wb, err := op.FetchModel(ctx, federationName, ri.PublishedVersion, "f32")
		if err != nil {
			return 0, err
		}
		w, err := coordinator.DecodeFloat32s(wb)
		if err != nil {
			return 0, err
		}
		if sum.final == nil {
			if sum.final, err = model.Build(spec, 0); err != nil {
				return 0, err
			}
		}
		if err := sum.final.SetFlat(w); err != nil {
			return 0, err
		}
		if m.Loss, m.Accuracy, err = sum.final.Evaluate(test.X, test.Y, test.Len(), lossFor(spec)); err != nil {
			return 0, err
		}
		version = ri.PublishedVersion
		sum.Rounds = append(sum.Rounds, m)
		if hooks.Round != nil {
			hooks.Round(m)
		}
	}
	// Let the nodes see the federation is done and return.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	return version, nil
}
