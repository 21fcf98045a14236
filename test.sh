#!/bin/sh
# Every check CI runs, with nothing but Go: formatting, the generated
# dashboard code, go vet, then every test with the race detector.
# Arguments go to "go test", e.g. ./test.sh -run TestDeb ./e2e
# (default: ./...). The fast loop while developing is go test -short ./...
set -eu
cd "$(dirname "$0")"

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed:" >&2
	echo "$unformatted" >&2
	exit 1
fi

# The committed *_templ.go files are what the .templ files generate, with
# the generator (tools/go.mod) at the runtime's version (go.mod).
runtime=$(go list -m -f '{{.Version}}' github.com/a-h/templ)
generator=$(go list -modfile=tools/go.mod -m -f '{{.Version}}' github.com/a-h/templ)
if [ "$runtime" != "$generator" ]; then
	echo "templ is $runtime in go.mod but $generator in tools/go.mod: use one version in both" >&2
	exit 1
fi
go tool -modfile=tools/go.mod templ generate -path web
stale=$(git status --porcelain -- '*_templ.go')
if [ -n "$stale" ]; then
	echo "templ output is stale: run go tool -modfile=tools/go.mod templ generate -path web and commit" >&2
	echo "$stale" >&2
	exit 1
fi

go vet ./...

if [ $# -eq 0 ]; then
	set -- ./...
fi
go test -race -count=1 -timeout 30m "$@"
