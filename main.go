// Command holdfast is an MQTT 3.1 and 3.1.1 broker that never forgets what it acknowledged.
//
//	holdfast [-c config.toml]          serve (the embedded default configuration without -c)
//	holdfast serve [-c config.toml]    the same
//	holdfast version                   print the version
//
// Exit codes: 0 success, 1 runtime error, 2 bad usage or configuration.
package main

import (
	_ "embed"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/persist"
)

//go:embed config.toml
var defaultConfig []byte

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// usageError is bad usage or configuration: exit code 2.
type usageError struct{ error }

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "version":
		fmt.Fprintln(stdout, "holdfast", version)
		return nil
	default:
		return usageError{fmt.Errorf("unknown command %q (commands: serve, version)", cmd)}
	}
}

// loadConfig reads the file named by -c, or the embedded defaults.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		c, err := config.Load(defaultConfig, "embedded config.toml", nil)
		if err != nil {
			return nil, usageError{err}
		}
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("reading configuration: %w", err)}
	}
	c, err := config.Load(defaultConfig, path, data)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(c.Level) // validated by config
	out := w
	console := c.Format == "console"
	if c.Format == "auto" {
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			console = true
		}
	}
	if console {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

func storeOptions(c *config.Config, log zerolog.Logger) (persist.Options, error) {
	d, err := persist.ParseDurability(c.Durability)
	if err != nil {
		return persist.Options{}, usageError{err}
	}
	o := persist.DefaultOptions(c.DataDir)
	o.Durability = d
	o.AsyncInterval = c.Store.AsyncInterval.Duration
	o.MemTableSize = c.Store.MemTableSize
	o.NumMemtables = c.Store.NumMemtables
	o.BlockCacheSize = c.Store.BlockCacheSize
	o.IndexCacheSize = c.Store.IndexCacheSize
	o.ValueLogFileSize = c.Store.ValueLogFileSize
	o.GCInterval = c.Store.GCInterval.Duration
	o.GCDiscardRatio = c.Store.GCDiscardRatio
	o.Logger = log.With().Str("component", "persist").Logger()
	return o, nil
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration file (TOML); without it the embedded defaults are used")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	opts, err := storeOptions(cfg, log)
	if err != nil {
		return err
	}
	store, err := persist.Open(opts)
	if err != nil {
		return err
	}
	srv, err := broker.New(cfg, store, log.With().Str("component", "broker").Logger())
	if err != nil {
		store.Close()
		return err
	}
	if err := srv.ListenAndServe(); err != nil {
		srv.Shutdown(context.Background())
		store.Close()
		return err
	}
	log.Info().Str("version", version).Str("durability", cfg.Durability).Str("data_dir", cfg.DataDir).Msg("holdfast ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	log.Info().Stringer("signal", got).Msg("shutting down")
	signal.Stop(sig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("shutdown did not finish in time")
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}
