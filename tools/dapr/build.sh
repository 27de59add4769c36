#!/usr/bin/env bash
# Build real Dapr from Go modules and lay it out as `dapr init --slim` would (`make dapr`).
#
#   ~/.dapr/bin/daprd, placement, scheduler   from module github.com/dapr/dapr (version: go.mod here)
#   ~/.dapr/bin/dapr                          the Dapr CLI, module github.com/dapr/cli (DAPR_CLI_VERSION)
#   ~/.dapr/components/  ~/.dapr/config.yaml  what a slim init creates (an empty folder, no tracing)
#
# `dapr init --slim` downloads release archives from GitHub, which this machine cannot reach;
# the Go module proxy serves the same sources. The layout and the version check follow the Dapr
# CLI (pkg/standalone: bin/, components/ and config.yaml under ~/.dapr, or under
# $DAPR_RUNTIME_PATH/.dapr; `dapr --version` runs `daprd --version` and `dapr run` compares that
# output as a semantic version, so daprd must carry its release number, not "edge").
# A second run with the pinned versions in place does nothing; a rebuild reuses Go's build cache.
set -euo pipefail

# The CLI release. The runtime release is the github.com/dapr/dapr line of go.mod beside this file.
DAPR_CLI_VERSION=v1.18.0
# Release archives of daprd are built with every component (dapr/dapr Makefile: DAPR_SIDECAR_FLAVOR);
# stablecomponents builds a smaller daprd with the stable ones only (state.redis is among them).
DAPR_SIDECAR_FLAVOR=${DAPR_SIDECAR_FLAVOR:-allcomponents}

here=$(cd "$(dirname "$0")" && pwd)
if [[ -n "${DAPR_RUNTIME_PATH:-}" ]]; then dapr_dir="$DAPR_RUNTIME_PATH/.dapr"; else dapr_dir="$HOME/.dapr"; fi
bin="$dapr_dir/bin"

command -v go >/dev/null || { echo "build.sh: Go is needed (go.dev/dl, or your distribution's golang)" >&2; exit 1; }
runtime_tag=$(cd "$here" && go list -m -f '{{.Version}}' github.com/dapr/dapr)   # v1.18.2
runtime_version=${runtime_tag#v}

slim_layout() {
  mkdir -p "$dapr_dir/components"
  # The Configuration a slim init writes (dapr/cli createDefaultConfiguration with no Zipkin host);
  # like the CLI, never overwrite one that is there.
  [[ -f "$dapr_dir/config.yaml" ]] || cat > "$dapr_dir/config.yaml" <<'EOF'
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprConfig
spec: {}
EOF
}

runtime_current() {
  [[ -x "$bin/daprd" && -x "$bin/placement" && -x "$bin/scheduler" ]] &&
    [[ "$("$bin/daprd" --version 2>/dev/null)" == "$runtime_version" ]]
}

cli_current() {
  [[ -x "$bin/dapr" ]] && "$bin/dapr" --version 2>/dev/null | grep -qx "CLI version: ${DAPR_CLI_VERSION#v}"
}

build_runtime() {
  local stage ldflags
  stage=$(mktemp -d "$dapr_dir/.build.XXXXXX")
  # The -X flags of dapr/dapr's Makefile (DEFAULT_LDFLAGS), with the release's number and tag.
  ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$runtime_version"
  ldflags+=" -X github.com/dapr/dapr/pkg/buildinfo.gitversion=$runtime_tag"
  ldflags+=" -X github.com/dapr/dapr/pkg/buildinfo.gitcommit=$(module_commit github.com/dapr/dapr@"$runtime_tag")"
  ldflags+=" -X github.com/dapr/kit/logger.DaprVersion=$runtime_version"
  for cmd in daprd placement scheduler; do
    echo "build.sh: building $cmd $runtime_tag"
    # The flavor tag selects daprd's components; placement and scheduler have none.
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -tags "$DAPR_SIDECAR_FLAVOR" \
      -ldflags "$ldflags" -o "$stage/$cmd" "github.com/dapr/dapr/cmd/$cmd")
  done
  mv -f "$stage"/daprd "$stage"/placement "$stage"/scheduler "$bin/"
  rmdir "$stage"
}

# The commit a module version was tagged at, as the module proxy records it (empty if unknown).
module_commit() {
  (cd "$here" && go mod download -json "$1" 2>/dev/null) |
    sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -n 1
}

build_cli() {
  local stage
  stage=$(mktemp -d "$dapr_dir/.build.XXXXXX")
  echo "build.sh: building the Dapr CLI $DAPR_CLI_VERSION"
  # The CLI's Makefile sets main.version and main.apiVersion the same way. The CLI's go.mod has
  # no replace directives, so `go install module@version` builds it as released.
  if CGO_ENABLED=0 GOBIN="$stage" GOFLAGS=-mod=mod go install -trimpath \
      -ldflags "-s -w -X main.version=${DAPR_CLI_VERSION#v} -X main.apiVersion=1.0" \
      "github.com/dapr/cli@$DAPR_CLI_VERSION"; then
    mv -f "$stage/cli" "$bin/dapr"
    rmdir "$stage"
    return 0
  fi
  rm -rf "$stage"
  return 1
}

mkdir -p "$bin"
slim_layout
if runtime_current; then
  echo "build.sh: daprd, placement and scheduler $runtime_version are in $bin"
else
  build_runtime
fi
if cli_current; then
  echo "build.sh: the Dapr CLI ${DAPR_CLI_VERSION#v} is $bin/dapr"
elif ! build_cli; then
  echo "build.sh: the Dapr CLI $DAPR_CLI_VERSION could not be built from the Go module proxy" \
    "(see docs/dapr.md); \`make dapr-run\` runs dapr.yaml without it (tools/dapr/run_file.py)" >&2
fi
echo "build.sh: daprd $("$bin/daprd" --version) in $bin"
