package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/medfed/medfed/coordinator"
	"github.com/medfed/medfed/inference"
)

// runCoordinator runs one node of the Raft-replicated coordinator until ctx is cancelled
// (SIGINT or SIGTERM in main), then shuts it down gracefully.
func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, level, err := coordinatorConfig(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.Insecure {
		logger.Warn("running WITHOUT TLS (--insecure): anyone who can reach this node can act as any hospital or operator, or join its Raft log; use only for local experiments")
	}
	n, err := coordinator.New(cfg, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "coordinator %s: raft %s, grpc %s", cfg.NodeID, cfg.RaftAddr, n.GRPCAddr())
	if a := n.HTTPAddr(); a != "" {
		fmt.Fprintf(stdout, ", http %s", a)
	}
	fmt.Fprintln(stdout)
	err = n.Run(ctx)
	logger.Info("coordinator stopped")
	return err
}

func coordinatorConfig(args []string, stderr io.Writer) (coordinator.Config, slog.Level, error) {
	var cfg coordinator.Config
	var peers, grpcPeers, logLevel, tokenFile string
	var tf tlsFlags
	fs := flag.NewFlagSet("medfed coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.NodeID, "node-id", "", "this node's ID, one of the IDs in --peers, or a new one with --join (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the Raft log, snapshots and stored update bytes (blobs/); a restarted node resumes from it (required)")
	fs.StringVar(&cfg.RaftDir, "raft-dir", "", "directory of the Raft log and snapshots, on a device of its own if the commits' fsyncs should not queue behind update bytes; recorded in --data-dir at the first start and found there later (default: --data-dir)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "", "HOST:PORT of the Raft transport; the address --peers (or 'medfed cluster add --raft-addr') gives for this node (required)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "", "HOST:PORT of the gRPC services (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "HOST:PORT of /healthz, /metrics and inference over REST (/v2/...); HTTPS unless --insecure (default: off)")
	fs.StringVar(&peers, "peers", "", "the initial cluster, the same on every node: id1=raftaddr1,id2=raftaddr2,... (required unless --join)")
	join := fs.Bool("join", false, "start with no peers and wait to be added to a running cluster ('medfed cluster add'); restart with --join too")
	fs.StringVar(&grpcPeers, "grpc-peers", "", "the nodes' gRPC addresses, id1=grpcaddr1,...; needed so that followers can forward writes to the leader before it has recorded its address")
	fs.StringVar(&tokenFile, "inference-tokens", "", "file of bearer tokens for inference callers without a consortium certificate: one \"<caller> sha256:<hex of the token's SHA-256>\" per line, # comments (default: certificates only)")
	fs.IntVar(&cfg.Inference.Retain, "inference-retain", 0, "newest model versions of each federation kept loaded for inference (default 3)")
	fs.BoolVar(&cfg.SyncUpdates, "sync-updates", false, "flush every stored copy of an update to disk before acknowledging it (default: acknowledged once a majority of nodes hold it, flushed by the operating system later; this survives the loss of any minority of nodes, not a power cut on a majority)")
	fs.DurationVar(&cfg.CeremonyTimeout, "ceremony-timeout", 0, "how long a key ceremony may take when the federation does not say (ceremony_timeout); then it restarts without the missing hospitals or the federation stops (default 30m)")
	tf.register(fs, "this node's coordinator")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return cfg, 0, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, 0, usageError(fs, "--log-level %q: expected debug, info, warn or error", logLevel)
	}
	var missing []string
	required := map[string]string{"node-id": cfg.NodeID, "data-dir": cfg.DataDir, "raft-addr": cfg.RaftAddr, "grpc-addr": cfg.GRPCAddr}
	if !*join {
		required["peers"] = peers
	}
	for name, v := range required {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return cfg, 0, usageError(fs, "missing %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	var err error
	if *join {
		// The cluster tells a node it adds who the others are: a peer list here would make
		// the node bootstrap a cluster of its own.
		if peers != "" || grpcPeers != "" {
			return cfg, 0, usageError(fs, "--join excludes --peers and --grpc-peers: the cluster that adds this node tells it its peers")
		}
	} else if cfg.Peers, err = coordinator.ParsePeers(peers, grpcPeers); err != nil {
		return cfg, 0, usageError(fs, "%v", err)
	}
	if cfg.CeremonyTimeout < 0 {
		return cfg, 0, usageError(fs, "--ceremony-timeout %v: expected a positive duration such as 30m", cfg.CeremonyTimeout)
	}
	if cfg.Inference.Retain < 0 {
		return cfg, 0, usageError(fs, "--inference-retain %d: expected at least 1", cfg.Inference.Retain)
	}
	if tokenFile != "" {
		if cfg.InferenceTokens, err = inference.LoadTokenFile(tokenFile); err != nil {
			return cfg, 0, fmt.Errorf("--inference-tokens: %w", err)
		}
	}
	if err := tf.check(fs); err != nil {
		return cfg, 0, err
	}
	cfg.Insecure = tf.insecure
	if cfg.ServerTLS, cfg.ClientTLS, err = tf.serverConfigs(); err != nil {
		return cfg, 0, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, 0, err
	}
	return cfg, level, nil
}

// usageError prints a message and the flags, and returns errUsage.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), format+"\n", args...)
	fs.Usage()
	return errors.Join(errUsage, fmt.Errorf(format, args...))
}
