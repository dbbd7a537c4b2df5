#!/bin/sh
# Regenerate the README's FAULTLINE_* table from the option table in
# runtime/preload/options.h:   tests/preload/readme-options.sh build
set -eu
cd "$(dirname "$0")/../.."
cli=${1:-build}/runtime/cli/faultline
tmp=$(mktemp)
{
	sed -n '1,/<!-- options:begin/p' README.md
	"$cli" env --markdown
	sed -n '/<!-- options:end/,$p' README.md
} > "$tmp"
mv "$tmp" README.md
