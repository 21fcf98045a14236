#!/bin/sh
# Builds the .deb packages of the server (thinfleet) and of the agent
# (thinfleet-agent) into dist/, for amd64 and arm64:
#   deploy/deb/build.sh                       # all four
#   ARCHS=arm64 PACKAGES=thinfleet-agent deploy/deb/build.sh
#   DIST=/tmp/debs deploy/deb/build.sh        # elsewhere
# Each carries a static binary (CGO_ENABLED=0), its systemd unit from
# deploy/systemd, its settings file in /etc/default (a conffile) and its
# folders; nfpm (a tool of tools/go.mod) makes the package from
# deploy/deb/<package>.yaml.
set -eu
cd "$(dirname "$0")/../.."

ARCHS=${ARCHS:-amd64 arm64}
PACKAGES=${PACKAGES:-thinfleet thinfleet-agent}
DIST=${DIST:-dist}

# The binaries say what "git describe" says. The package version must
# start with a digit and sort: a v1.2.3 tag gives 1.2.3 (nfpm reads it as
# semver), no tag 0.0.0~git<commit time>.<commit>.
binversion=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
if tag=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	VERSION=${VERSION:-${tag#v}}
else
	VERSION=${VERSION:-0.0.0~git$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null || echo 0).$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
fi
# The files' times in the packages: the commit's, so a package is the
# same bytes each time it is built from one commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export VERSION SOURCE_DATE_EPOCH

mkdir -p "$DIST"
for arch in $ARCHS; do
	BIN_DIR=$DIST/build/linux-$arch
	mkdir -p "$BIN_DIR"
	for pkg in $PACKAGES; do
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
			-ldflags "-s -w -X main.version=$binversion" -o "$BIN_DIR/$pkg" "./cmd/$pkg"
		# nfpm itself for this machine: go tool would build it for GOARCH.
		GOOS= GOARCH= DEB_ARCH=$arch BIN_DIR=$BIN_DIR go tool -modfile=tools/go.mod nfpm package \
			--config "deploy/deb/$pkg.yaml" --packager deb --target "$DIST/"
	done
done
