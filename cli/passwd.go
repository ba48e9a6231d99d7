package cli

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/holdfast/holdfast/auth"
)

func init() {
	commands["passwd"] = command{"add or update a user in a password file", passwd}
}

// passwd adds or updates a user with a strong hash, or with --scram a SCRAM-SHA-256 entry. The
// password is read from the terminal (twice, without echo) or, when stdin is not a terminal, as
// one line from stdin; never from the command line, where other users could see it.
func passwd(env *Env, args []string) error {
	fs := newFlags(env, "passwd", "[--scram] [--iterations N] FILE USER   (the password is read from the terminal or stdin)")
	scram := fs.Bool("scram", false, "write a SCRAM-SHA-256 entry (RFC 5803): for MQTT 5 SCRAM-SHA-256 logins, and plain passwords too")
	iterations := fs.Int("iterations", 0, fmt.Sprintf("PBKDF2 iterations (default %d, with --scram %d)", auth.DefaultIterations, auth.DefaultSCRAMIterations))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err}
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usagef("passwd takes FILE and USER")
	}
	file, user := fs.Arg(0), fs.Arg(1)
	if err := auth.ValidUsername(user); err != nil {
		return UsageError{err}
	}
	password, err := readPassword(env)
	if err != nil {
		return err
	}
	var oldMode os.FileMode
	if fi, err := os.Lstat(file); err == nil && fi.Mode().IsRegular() {
		oldMode = fi.Mode().Perm()
	}
	hash := auth.HashPasswordIterations
	if *scram {
		hash = auth.HashSCRAM
	}
	switch {
	case *iterations < 0:
		return usagef("--iterations must be positive")
	case *iterations == 0 && *scram:
		*iterations = auth.DefaultSCRAMIterations
	case *iterations == 0:
		*iterations = auth.DefaultIterations
	}
	h, err := hash(password, *iterations)
	if err != nil {
		return UsageError{err}
	}
	if err := auth.SetPasswordHash(file, user, h); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "holdfast: %s: password of %q set\n", file, user)
	if oldMode != 0 && oldMode != 0o600 {
		// Said aloud: a broker that read the file through its group cannot any more.
		fmt.Fprintf(env.Stderr, "holdfast: %s: mode changed from %04o to 0600: only its owner can read it now\n", file, oldMode)
	}
	return nil
}

func readPassword(env *Env) ([]byte, error) {
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(env.Stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(env.Stderr, "Repeat password: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			return nil, usagef("the passwords do not match")
		}
		if len(p1) == 0 {
			return nil, usagef("empty password")
		}
		return p1, nil
	}
	line, err := bufio.NewReader(env.Stdin).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return nil, usagef("no password on stdin")
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		return nil, usagef("empty password")
	}
	return line, nil
}
