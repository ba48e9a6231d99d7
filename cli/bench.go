package cli

import "github.com/holdfast/holdfast/bench"

func init() {
	commands["bench"] = command{"load-test an MQTT broker (holdfast bench -h)", func(env *Env, args []string) error {
		return bench.Main(args, env.Stdout, env.Stderr)
	}}
}
