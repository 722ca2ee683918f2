#!/usr/bin/env bash
# Regenerates docs/CLI.md from the built binary's --help (CLITests checks that they agree).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/debug/gmtool}
{
  echo "# gmtool command-line reference"
  echo
  echo "Generated from \`gmtool --help\` by \`scripts/cli-docs.sh\`; \`Tests/CLITests\` fails when they differ."
  for cmd in "" $("$bin" --help | awk '/^SUBCOMMANDS:/{s=1;next} s&&/^  [a-z]/{print $1}'); do
    echo
    echo "## gmtool $cmd" | sed 's/ *$//'
    echo
    echo '```'
    if [ -z "$cmd" ]; then "$bin" --help; else "$bin" help "$cmd"; fi
    echo '```'
  done
} > docs/CLI.md
