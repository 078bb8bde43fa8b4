#!/usr/bin/env bash
# Record a screen of `expwatch demo` into docs/demo-session.txt (what the README shows).
#
# The demo runs in a detached 160x50 tmux pane on a tmux server of its own (the user's tmux
# is never touched), at its default pace (results refresh every 4 s). Once every story has
# been told (the checkout redesign won, the onboarding checklist shows an SRM, the pricing
# page's guardrail regressed, search ranking was stopped, the carousel decided, and the last
# alert reached the terminal), the pane is captured as plain text and the demo is stopped with
# Ctrl-C. tests/expwatch/test_demo_session.py records the same way and checks the screen.
#
# Usage: bash docs/record_demo.sh [extra `expwatch demo` options, e.g. --refresh-seconds 1]
# Needs tmux (Debian/Ubuntu: apt-get install tmux) and the virtualenv of the README.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v tmux >/dev/null || { echo "record_demo.sh: tmux is not installed" >&2; exit 1; }
work=$(mktemp -d /tmp/expwatch-demo.XXXXXX)
socket="$work/tmux.sock"
trap 'tmux -S "$socket" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT

env -u TMUX TERM=xterm-256color tmux -S "$socket" -f /dev/null \
  new-session -d -s demo -x 160 -y 50 -c "$PWD" \
  ".venv/bin/expwatch demo --dir $work/demo $*" \; \
  set-option -t demo remain-on-exit on

told() {
  local screen="$1"
  grep -q "Checkout redesign .* won " <<<"$screen" &&
    grep -q "Paid upgrade (guardrail) .*regressed" <<<"$screen" &&
    grep -q "Onboarding checklist .*MISMATCH" <<<"$screen" &&
    grep -q "Search ranking v2 .*stopped" <<<"$screen" &&
    grep -q "Recommendations carousel .*decision_made" <<<"$screen" &&
    grep -q "\[info\] Recommendations carousel: decision recorded: launched" <<<"$screen"
}

deadline=$((SECONDS + 120))
until told "$(tmux -S "$socket" capture-pane -p -t demo)"; do
  if ((SECONDS > deadline)); then
    echo "record_demo.sh: the demo did not tell every story within 120 s; its screen:" >&2
    tmux -S "$socket" capture-pane -p -t demo >&2
    exit 1
  fi
  sleep 0.5
done

# The pane as text, without trailing blanks.
tmux -S "$socket" capture-pane -p -t demo |
  sed -e 's/[[:space:]]*$//' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >docs/demo-session.txt
tmux -S "$socket" send-keys -t demo C-c
echo "recorded docs/demo-session.txt ($(wc -l <docs/demo-session.txt) lines)"
