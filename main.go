// Command holdfast is an MQTT 3.1 and 3.1.1 broker that never forgets what it acknowledged.
//
//	holdfast [-c config.toml]      serve (the embedded default configuration without -c)
//	holdfast help                  list the commands; each has -h
//
// Exit codes: 0 success, 1 runtime error, 2 bad usage or configuration, 3 a storage error stopped
// the broker (fail-stop), 4 the data directory is damaged (start refused; see holdfast verify).
package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/holdfast/holdfast/cli"
)

//go:embed config.toml
var defaultConfig []byte

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	env := &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, DefaultConfig: defaultConfig, Version: version}
	err := cli.Run(env, os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(cli.UsageError)):
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(2)
	case errors.As(err, new(cli.StorageError)):
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(3)
	case errors.As(err, new(cli.DamageError)):
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(4)
	default:
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		os.Exit(1)
	}
}
