// Package cli implements holdfast's command line: serve (the default) and the operators'
// subcommands. main.go only hands it the arguments and the embedded default configuration.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/persist"
)

// UsageError is bad usage or configuration: exit code 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// StorageError is a failure of the store's disk that stopped the broker (fail-stop): exit code 3.
type StorageError struct{ Err error }

func (e StorageError) Error() string { return "storage error: " + e.Err.Error() }
func (e StorageError) Unwrap() error { return e.Err }

// DamageError is a data directory the broker refuses to start on because what it holds is
// damaged (persist.ErrCorrupt): exit code 4. A restart cannot help; an operator must look
// (holdfast verify, then recover or restore).
type DamageError struct{ Err error }

func (e DamageError) Error() string { return e.Err.Error() + " (see holdfast verify)" }
func (e DamageError) Unwrap() error { return e.Err }

// damaged wraps err in DamageError when it reports damaged data.
func damaged(err error) error {
	if errors.Is(err, persist.ErrCorrupt) {
		return DamageError{err}
	}
	return err
}

// Env is what every command gets.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	DefaultConfig  []byte // the embedded config.toml
	Version        string
}

type command struct {
	summary string
	run     func(env *Env, args []string) error
}

// commands is filled by the init functions of the files that implement them (package-level
// initialization runs before any init, so their order does not matter).
var commands = map[string]command{}

func init() {
	commands["serve"] = command{"run the broker (the default)", serve}
	commands["version"] = command{"print the version", func(env *Env, _ []string) error {
		fmt.Fprintln(env.Stdout, "holdfast", env.Version)
		return nil
	}}
}

// Run runs the command named by args[0] (serve when args is empty or starts with a flag).
func Run(env *Env, args []string) error {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		printHelp(env.Stdout)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		printHelp(env.Stderr)
		return usagef("unknown command %q", name)
	}
	return cmd.run(env, args)
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "usage: holdfast [command] [flags]   (each command has -h)")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(env *Env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: holdfast %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning errors into UsageError (and -h into flag.ErrHelp).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// loadConfig reads path on top of the embedded defaults (or the defaults alone when path is "").
func loadConfig(env *Env, path string) (*config.Config, error) {
	if path == "" {
		c, err := config.Load(env.DefaultConfig, "embedded config.toml", nil)
		if err != nil {
			return nil, UsageError{err}
		}
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("reading configuration: %w", err)
	}
	c, err := config.Load(env.DefaultConfig, path, data)
	if err != nil {
		return nil, UsageError{err}
	}
	return c, nil
}

// newLogger builds the zerolog logger the configuration asks for.
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	// The level is the global one, so that SIGHUP can change it for every component at once.
	level, _ := zerolog.ParseLevel(c.Level) // validated by config
	zerolog.SetGlobalLevel(level)
	out := w
	console := c.Format == "console"
	if c.Format == "auto" {
		console = isTerminal(w)
	}
	if console {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// storeOptions maps the configuration onto persist's options: every store setting comes from
// it, so config.toml is the one place their defaults are written.
func storeOptions(c *config.Config, log zerolog.Logger) (persist.Options, error) {
	d, err := persist.ParseDurability(c.Durability)
	if err != nil {
		return persist.Options{}, UsageError{err}
	}
	return persist.Options{
		Dir:              c.DataDir,
		Durability:       d,
		AsyncInterval:    c.Store.AsyncInterval.Duration,
		MemTableSize:     c.Store.MemTableSize,
		NumMemtables:     c.Store.NumMemtables,
		BlockCacheSize:   c.Store.BlockCacheSize,
		IndexCacheSize:   c.Store.IndexCacheSize,
		ValueLogFileSize: c.Store.ValueLogFileSize,
		GCInterval:       c.Store.GCInterval.Duration,
		GCDiscardRatio:   c.Store.GCDiscardRatio,
		MinFreeBytes:     c.Store.MinFreeBytes,
		Logger:           log,
	}, nil
}
