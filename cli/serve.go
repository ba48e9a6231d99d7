package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/admin"
	"github.com/holdfast/holdfast/broker"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/metrics"
	"github.com/holdfast/holdfast/persist"
)

// shutdownTimeout bounds a graceful shutdown.
const shutdownTimeout = 30 * time.Second

func serve(env *Env, args []string) (err error) {
	fs := newFlags(env, "serve", "[-c config.toml]")
	path := fs.String("c", "", "configuration file (TOML); without it the embedded defaults are used")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Signals are caught from the start: a SIGHUP (systemctl reload) or SIGTERM that arrives
	// during recovery waits for it instead of killing the process with the default action.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	cfg, err := loadConfig(env, *path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, env.Stderr)
	rules, err := broker.LoadAuth(cfg.Auth, log)
	if err != nil {
		return usagef("%s: %w", configName(*path), err)
	}
	opts, err := storeOptions(cfg, log)
	if err != nil {
		return err
	}
	store, err := persist.Open(opts)
	if err != nil {
		return damaged(err)
	}
	if opts.Durability != persist.None {
		warnDataDirMode(log, opts.Dir)
	}
	defer func() {
		if cerr := closeStore(store, log); err == nil {
			err = cerr
		}
	}()
	b, err := startBroker(env, cfg, store, rules, log)
	if err != nil {
		return err
	}
	log.Info().Str("version", env.Version).Str("durability", cfg.Durability).Str("data_dir", cfg.DataDir).Msg("holdfast ready")

	var failed error
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				reload(env, *path, log)
				b.reload()
				continue
			}
			log.Info().Stringer("signal", s).Msg("shutting down: no new connections, finishing pending commits")
			break wait
		case <-store.Failed():
			// Fail-stop: the store acknowledges nothing more; a restart recovers from the disk.
			failed = StorageError{store.Err()}
			log.Warn().Str("data_dir", cfg.DataDir).Msg("stopping after the storage error above (exit code 3)")
			break wait
		}
	}
	b.stop()
	log.Info().Msg("stopped")
	return failed
}

// closeStore closes store; a store that failed, before or while closing, is a StorageError
// (fail-stop), said in the log already.
func closeStore(store *persist.Store, log zerolog.Logger) error {
	err := store.Close()
	switch {
	case err == nil:
	case errors.Is(err, persist.ErrFailed):
		return StorageError{err}
	default:
		log.Error().Err(err).Msg("closing the store")
	}
	return nil
}

// running is a broker serving with its admin listener.
type running struct {
	srv *broker.Server
	adm *admin.Server // nil: no admin listener
	log zerolog.Logger
}

// startBroker rebuilds the broker's state from store and serves it, with the admin listener if
// one is configured; on an error nothing is left running.
func startBroker(env *Env, cfg *config.Config, store *persist.Store, rules *broker.AuthRules, log zerolog.Logger) (*running, error) {
	srv, err := broker.New(cfg, store, rules, "holdfast "+env.Version, log.With().Str("component", "broker").Logger())
	if err != nil {
		return nil, damaged(err)
	}
	b := &running{srv: srv, log: log}
	if err := srv.ListenAndServe(); err != nil {
		b.stop()
		return nil, err
	}
	if cfg.Admin.Address != "" {
		b.adm, err = admin.Start(cfg.Admin.Address, cfg.Admin.Token, srv, store, metrics.Registry(srv, store), log.With().Str("component", "admin").Logger())
		if err != nil {
			b.stop()
			return nil, err
		}
	}
	return b, nil
}

// stop closes the admin listener, then every connection, and waits for pending commits.
func (b *running) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if b.adm != nil {
		b.adm.Shutdown(ctx)
	}
	if err := b.srv.Shutdown(ctx); err != nil {
		b.log.Warn().Err(err).Msg("shutdown did not finish in time")
	}
}

// reload takes a SIGHUP's new password file, ACL and certificates.
func (b *running) reload() {
	b.srv.ReloadAuth()
	b.srv.ReloadCertificates()
}

// warnDataDirMode warns when group or others may enter the data directory. persist creates it
// 0700, but one made beforehand keeps its mode, and Badger's files in it are 0644 with the
// usual umask: other users could then read every stored message (their names are
// predictable, so search permission alone is enough).
func warnDataDirMode(log zerolog.Logger, dir string) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	log.Warn().Str("data_dir", dir).Str("mode", fmt.Sprintf("%04o", fi.Mode().Perm())).
		Msg("the data directory is open to other users: they can read the stored messages and sessions; chmod 700 it")
}

// reload re-reads what can change without a restart; a broken file keeps the old settings.
func reload(env *Env, path string, log zerolog.Logger) {
	cfg, err := loadConfig(env, path)
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: configuration not reloaded, keeping the old one")
		return
	}
	level, _ := zerolog.ParseLevel(cfg.Log.Level)
	if old := zerolog.GlobalLevel(); old != level {
		zerolog.SetGlobalLevel(level)
		log.Info().Stringer("from", old).Stringer("to", level).Msg("SIGHUP: log level changed")
	}
}

// configName names the configuration in messages.
func configName(path string) string {
	if path == "" {
		return "embedded config.toml"
	}
	return path
}
