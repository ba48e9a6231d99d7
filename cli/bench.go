package cli

import (
	"errors"

	"github.com/holdfast/holdfast/bench"
)

func init() {
	commands["bench"] = command{"load-test an MQTT broker (holdfast bench -h)", func(env *Env, args []string) error {
		err := bench.Main(args, env.Stdout, env.Stderr)
		if errors.Is(err, bench.ErrUsage) {
			return UsageError{err} // exit code 2, as for every command
		}
		return err
	}}
}
