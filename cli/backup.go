package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/admin"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/persist"
	"github.com/rs/zerolog"
)

func init() {
	commands["backup"] = command{"back up the store: online (-c, admin listener) or a stopped broker's --data", backup}
}

const backupUsage = `(-c config.toml | --data DIR) --out FILE [--since N] [--quiet]

Online (broker running): -c names the broker's configuration; the backup is taken through its
admin listener ([admin] address, with admin.token), a consistent snapshot while clients go on.
Offline (broker stopped): --data opens the data directory as the broker would (a store left by
a crash is recovered first) and reads it directly.

--since 0 (the default) takes a full backup. The command prints
  backup FILE since=N next=M bytes=B
and the next incremental backup is taken with --since M (M itself, not M+1: a backup holds the
changes with versions > since, and M is the highest version this one holds).
Restore a full backup and its incrementals with: holdfast restore --data NEWDIR --in FULL --in INC1 ...

Progress goes to stderr: a bar on a terminal, otherwise a line every 5 s and one at the end
with the total and the time taken; --quiet silences it.
A full backup's size is estimated from the store's files (a running broker's as of up to a minute
ago), hence the ~.
`

func backup(env *Env, args []string) error {
	fs := newFlags(env, "backup", backupUsage)
	cfgPath := fs.String("c", "", "the running broker's configuration: back up through its admin listener")
	dataDir := fs.String("data", "", "a stopped broker's data directory: back it up directly")
	out := fs.String("out", "", "the backup file to write (must not exist)")
	since := fs.Uint64("since", 0, "incremental: only changes after this version (the next= of the previous backup); 0 = full")
	quiet := fs.Bool("quiet", false, "show no progress on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *out == "":
		fs.Usage()
		return usagef("backup: --out FILE is required")
	case (*cfgPath == "") == (*dataDir == ""):
		fs.Usage()
		return usagef("backup: give either -c config.toml (running broker) or --data DIR (stopped broker)")
	}
	// Ctrl-C or SIGTERM aborts the backup: the stream's next write fails, the .tmp file goes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := newProgress(env, "backup", *quiet)
	defer prog.stop()
	var produce func(w io.Writer) (uint64, error)
	var source string
	if *cfgPath != "" {
		cfg, err := loadConfig(env, *cfgPath)
		if err != nil {
			return err
		}
		base, err := adminBase(cfg, *cfgPath)
		if err != nil {
			return err
		}
		source = base
		produce = func(w io.Writer) (uint64, error) { return onlineBackup(ctx, cfg, base, *since, w, prog) }
	} else {
		st, err := openStopped(env, *dataDir, "backup")
		if err != nil {
			return err
		}
		defer st.Close()
		source = *dataDir
		if *since == 0 {
			prog.setTotal(admin.BackupEstimate(st.Stats()), true)
		}
		produce = func(w io.Writer) (uint64, error) { return st.Backup(w, *since) }
	}
	h, size, err := writeBackupFile(*out, *since, func(w *streamWriter) (uint64, error) {
		return produce(prog.start().writer(&ctxWriter{ctx: ctx, w: w}))
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("backup of %s interrupted; %s not written", source, *out)
		}
		if *dataDir != "" {
			return fmt.Errorf("backup of %s failed, %s not written (if the store may be damaged, check it with holdfast verify --data %s): %w", source, *out, *dataDir, err)
		}
		return fmt.Errorf("backup of %s failed, %s not written: %w", source, *out, err)
	}
	prog.finish()
	fmt.Fprintf(env.Stdout, "backup %s since=%d next=%d bytes=%d\n", *out, h.Since, h.Next, size)
	fmt.Fprintf(env.Stderr, "holdfast: next incremental backup: --since %d (exactly next=, not next+1)\n", h.Next)
	return nil
}

// ctxWriter fails writes once ctx is done, which aborts persist's Backup and the HTTP copy.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// openStopped opens a stopped broker's data directory read-write (Badger has no read-only
// snapshot backup) for what, with the embedded configuration's store settings.
func openStopped(env *Env, dir, what string) (*persist.Store, error) {
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		if _, derr := os.Stat(dir); derr != nil {
			return nil, derr
		}
		return nil, fmt.Errorf("%s holds no holdfast store (no Badger MANIFEST)", dir)
	}
	cfg, err := loadConfig(env, "")
	if err != nil {
		return nil, err
	}
	o, err := storeOptions(cfg, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	o.Durability = persist.Sync
	o.NumMemtables = 2 // nothing is written: keep the memory small
	o.BlockCacheSize = 16 << 20
	o.IndexCacheSize = 16 << 20
	st, err := persist.Open(o)
	if errors.Is(err, persist.ErrLocked) {
		return nil, fmt.Errorf("%s is in use by a running broker: take an online %s through its admin listener with -c config.toml instead of --data (or stop the broker first)", dir, what)
	}
	return st, err
}

// adminBase returns the http://host:port of the admin listener cfg names.
func adminBase(cfg *config.Config, path string) (string, error) {
	addr := cfg.Admin.Address
	if addr == "" {
		return "", usagef("%s has no [admin] address: the broker's admin listener is off. Set admin.address (e.g. \"127.0.0.1:9883\") and restart the broker, or stop it and use --data DIR", path)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("%s: admin.address %q: %v", path, addr, err)
	}
	if port == "0" {
		return "", usagef("%s: admin.address %q has port 0 (chosen when the broker starts): give the real port in the configuration used with -c", path, addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

var adminClient = &http.Client{Transport: &http.Transport{
	Proxy:              nil, // the admin listener is local: never through HTTP_PROXY
	DialContext:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	DisableCompression: true,
}}

// adminGet sends GET base+path with the configured bearer token and checks the status.
func adminGet(ctx context.Context, cfg *config.Config, base, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	if cfg.Admin.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("cannot reach the admin listener at %s (is the broker running with this configuration?): %w", base, err)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusUnauthorized {
		if cfg.Admin.Token == "" {
			return nil, fmt.Errorf("%s%s: the admin listener requires a bearer token: set admin.token in the configuration (%s)", base, path, msg)
		}
		return nil, fmt.Errorf("%s%s: the admin listener refused admin.token (%s)", base, path, msg)
	}
	return nil, fmt.Errorf("%s%s: %s: %s", base, path, resp.Status, msg)
}

// onlineBackup streams GET /backup?since= into w and returns the version the broker sends in
// its trailer once the stream is complete. prog gets the broker's estimate of the length.
func onlineBackup(ctx context.Context, cfg *config.Config, base string, since uint64, w io.Writer, prog *progress) (uint64, error) {
	resp, err := adminGet(ctx, cfg, base, "/backup?since="+strconv.FormatUint(since, 10))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if n, err := strconv.ParseInt(resp.Header.Get(admin.EstimatedBytesHeader), 10, 64); err == nil && n > 0 {
		prog.setTotal(n, true)
	}
	if _, err := io.CopyBuffer(w, resp.Body, make([]byte, 1<<20)); err != nil {
		return 0, err
	}
	v := resp.Trailer.Get(admin.NextSinceTrailer)
	if v == "" {
		return 0, fmt.Errorf("the broker's backup stream ended without its %s trailer: the backup failed on the broker's side (see its log)", admin.NextSinceTrailer)
	}
	next, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("the broker sent %s %q: %v", admin.NextSinceTrailer, v, err)
	}
	return next, nil
}
