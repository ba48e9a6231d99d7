#!/usr/bin/env bash
# govulncheck over the module, against a vulnerability database built here from the
# golang.org/x/vulndb module (the Go module proxy serves it; the database's own host is not
# reachable from these machines). Fails when code in this module calls a vulnerable function of
# a dependency; vulnerabilities of the Go standard library are printed but do not fail the run,
# since their fixes need a newer Go toolchain than the one the project builds with (see the
# README, Security).
set -euo pipefail
cd "$(dirname "$0")/.."

vulndb=v0.0.0-20261105234957-e22db6528018 # the database's date: bump it to learn of newer reports
vuln=v1.9.0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go install "golang.org/x/vuln/cmd/govulncheck@$vuln"
# Outside this module, so that nothing is added to go.mod.
osv=$(cd "$work" && go mod download -json "golang.org/x/vulndb@$vulndb" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/data/osv
(cd "$work" && go run "golang.org/x/vulndb/cmd/indexdb@$vulndb" -vulns "$osv" -out "$work/db")

status=0
"$(go env GOPATH)/bin/govulncheck" -db "file://$work/db" ./... >"$work/report" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
	cat "$work/report" >&2
	echo "govulncheck failed (exit $status)" >&2
	exit 1
fi
modules=$(grep -c '^  Module: ' "$work/report" || true)
stdlib=$(grep -c '^  Standard library' "$work/report" || true)
if [ "$modules" -gt 0 ]; then
	cat "$work/report" >&2
	echo "govulncheck: $modules vulnerabilities in dependencies that this module calls" >&2
	exit 1
fi
if [ "$stdlib" -gt 0 ]; then
	echo "govulncheck: no vulnerable dependency called; $stdlib standard-library vulnerabilities of $(go env GOVERSION) are called (fixed in:" \
		"$(grep -A3 '^  Standard library' "$work/report" | sed -n 's/^ *Fixed in: //p' | sort -u | tr '\n' ' '))"
else
	echo "govulncheck: no vulnerability called (database $vulndb)"
fi
