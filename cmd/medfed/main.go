// Command medfed is MedFed's single binary: local training, and (as they land) the
// coordinator, the hospital client, simulations, prediction and PKI tools, as subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"simulate", "run a whole federation on this machine (virtual hospitals)", runSimulate},
		{"train", "train one model locally on one data set (the seed example)", runTrain},
		{"coordinator", "run one node of the Raft-replicated coordinator", runCoordinator},
		{"client", "run a hospital client node", runClient},
		{"federation", "create, show, pin, unpin or resume a federation on a coordinator cluster", runFederation},
		{"status", "show the coordinator cluster, its federations and rounds", runStatus},
		{"cluster", "add a node to the coordinator cluster, or remove one", runCluster},
		{"partition", "split a data set into per-hospital folders", runPartition},
		{"pki", "consortium CA and mTLS certificates (init, issue)", runPKI},
		{"predict", "classify inputs with a served model (Open Inference Protocol)", runPredict},
		{"version", "print the MedFed version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// subcommand runs one subcommand (sub, such as "create") of a command with the arguments
// after it.
type subcommand func(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error

// runSubcommand runs the subcommand args[0] of `medfed name` from subs, and prints usage
// for a missing, unknown or help subcommand.
func runSubcommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer, usage func(io.Writer), subs map[string]subcommand) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stderr)
		return flag.ErrHelp
	}
	if run, ok := subs[args[0]]; ok {
		return run(ctx, args[0], args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "medfed %s: unknown subcommand %q, want one of %s\n\n", name, args[0], strings.Join(slices.Sorted(maps.Keys(subs)), ", "))
	usage(stderr)
	return errUsage
}

// errUsage marks errors already explained by a usage message.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			default:
				fmt.Fprintf(stderr, "medfed %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "medfed: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: medfed <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'medfed <command> -h' for the flags of a command.")
}

// parseFlags parses args and refuses stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}
