package cli

import (
	"errors"
	"io"
	"testing"
)

// A bad flag of the load tool is bad usage (exit code 2), like any other command's.
func TestBenchBadUsageIsUsageError(t *testing.T) {
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	err := Run(env, []string{"bench", "fanin", "-qos", "3"})
	if !errors.As(err, new(UsageError)) {
		t.Fatalf("holdfast bench fanin -qos 3: %v (%T), want a UsageError", err, err)
	}
}
