package coordinator

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/medfed/medfed/internal/pb"
)

// metrics are the node's counters, exported in the Prometheus text format at /metrics.
type metrics struct {
	updatesAccepted atomic.Uint64
	updateBytes     atomic.Uint64
	updatesRefused  atomic.Uint64
	sharesAccepted  atomic.Uint64
	proposals       atomic.Uint64
	forwarded       atomic.Uint64
	published       atomic.Uint64

	// Where the accepted updates' time went, in nanoseconds: receiving, checking and
	// storing the bytes here and on the peers a majority needs, then committing the digest.
	updateReceiveNanos atomic.Uint64
	updateCommitNanos  atomic.Uint64
}

func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, leader := n.raft.LeaderWithID()
		if leader == "" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s leader=%s\n", n.raft.State(), leader)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		m := n.metrics
		counter := func(name, help string, v uint64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
		}
		seconds := func(name, help string, nanos uint64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %g\n", name, help, name, name, float64(nanos)/1e9)
		}
		gauge := func(name, help string, v float64) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
		}
		counter("medfed_coordinator_updates_accepted_total", "Updates accepted by this node.", m.updatesAccepted.Load())
		counter("medfed_coordinator_update_bytes_total", "Bytes of updates accepted by this node.", m.updateBytes.Load())
		seconds("medfed_coordinator_update_receive_seconds_total", "Time the accepted updates took from their header to their bytes checked and stored on a majority of nodes.", m.updateReceiveNanos.Load())
		seconds("medfed_coordinator_update_commit_seconds_total", "Time the accepted updates' digests took to commit through Raft.", m.updateCommitNanos.Load())
		counter("medfed_coordinator_updates_refused_total", "Updates refused by this node.", m.updatesRefused.Load())
		counter("medfed_coordinator_decryption_shares_accepted_total", "Decryption shares accepted by this node.", m.sharesAccepted.Load())
		counter("medfed_coordinator_raft_proposals_total", "Commands this node proposed as leader.", m.proposals.Load())
		counter("medfed_coordinator_forwarded_total", "Commands this node forwarded to the leader.", m.forwarded.Load())
		counter("medfed_coordinator_models_published_total", "Model versions this node published as leader.", m.published.Load())
		leader := 0.0
		if n.raft.State() == raft.Leader {
			leader = 1
		}
		gauge("medfed_coordinator_is_leader", "1 if this node leads the cluster.", leader)
		gauge("medfed_coordinator_applied_index", "Last Raft index applied to the state machine.", float64(n.raft.AppliedIndex()))
		fmt.Fprintf(w, "# HELP medfed_coordinator_round_state Current round of each federation, labelled with its state.\n# TYPE medfed_coordinator_round_state gauge\n")
		for _, f := range n.fsm.Federations() {
			if len(f.Rounds) == 0 {
				continue
			}
			r := f.Rounds[len(f.Rounds)-1]
			fmt.Fprintf(w, "medfed_coordinator_round_state{federation=%q,state=%q} %d\n", f.Spec.Name, stateName(r.State), r.Round)
		}
		fmt.Fprintf(w, "# HELP medfed_coordinator_model_version Latest model version of each federation.\n# TYPE medfed_coordinator_model_version gauge\n")
		for _, f := range n.fsm.Federations() {
			fmt.Fprintf(w, "medfed_coordinator_model_version{federation=%q} %d\n", f.Spec.Name, f.Models[len(f.Models)-1].Version)
		}
		_ = pb.RoundState_ROUND_STATE_OPEN
		n.inf.WriteMetrics(w)
	})
	// The Open Inference Protocol's REST side; its own GET /metrics is shadowed by the
	// node's, which includes the inference counters.
	oip := n.inf.Handler()
	mux.Handle("/v2/", oip)
	mux.Handle("/v2", oip)
	return mux
}
