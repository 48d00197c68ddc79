#!/bin/sh
# Hearth agent installer, served by your collector at /install.sh (and at
# /install/install.sh, where restic-manager's onboarding looks). Use it as
#   curl -fsSL $SERVER/install.sh | sudo HEARTH_SERVER=$SERVER HEARTH_TOKEN=$TOKEN sh
# or, as restic-manager's documents give it,
#   curl -fsSL $SERVER/install/install.sh | sudo RM_SERVER=$SERVER RM_TOKEN=$TOKEN bash
# It runs under sh (POSIX) and bash alike.
# It downloads the agent for this machine from the collector, checks its SHA-256,
# writes /etc/hearth/agent.env if there is none, enrols with the one-time token, and only
# then installs the agent to /usr/local/bin and (re)starts the systemd unit. Running it
# again changes nothing, unless HEARTH_FORCE_REENROLL=1: then a refused token changes
# nothing either, and an agent.env kept from before keeps its settings.
#
# Settings (environment):
#   HEARTH_SERVER          the collector's URL (required)
#   HEARTH_TOKEN           the one-time enrolment token (required to enrol)
#   HEARTH_FORCE_REENROLL  1: install and enrol again even if this host is enrolled
#   HEARTH_PREFIX          install under this directory instead of / (for tests and images)
#   HEARTH_NO_SYSTEMD      1: do not touch systemd; print how to run the agent instead
#   HEARTH_ARCH            the machine, if `uname -m` should not decide
#   HEARTH_ALLOW_HTTP      1: download over plain http from a collector named by a
#                          public address or a host name (a network you trust); https
#                          is the rule, and plain http is taken as is only from this host
#                          or a private address (10/8, 172.16/12, 192.168/16, 100.64/10,
#                          169.254/16, IPv6 unique-local and link-local), as the agent does
# restic-manager's names are read too, where the HEARTH_ one is unset: RM_SERVER,
# RM_TOKEN, RM_FORCE_REENROLL.
#
# Everything happens in `main`, called on the script's last line: a download cut short
# defines nothing and runs nothing, and the whole script is read before anything runs.
# Every way it can stop short of success exits non-zero.
set -eu

say() { printf 'hearth-install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# private_address URL: whether the host of an http:// URL is localhost or a literal
# loopback or private address (see HEARTH_ALLOW_HTTP).
private_address() {
  host=${1#http://}
  host=${host%%/*}
  case $host in
    \[*) host=${host%%]*}] ;;
    *) host=${host%%:*} ;;
  esac
  case $host in
    localhost | \[::1\] | \[[fF][cCdD]*\] | \[[fF][eE][89aAbB]*\]) return 0 ;;
    *[!0-9.]* | '') return 1 ;;
    127.* | 10.* | 192.168.* | 169.254.* | 172.1[6-9].* | 172.2[0-9].* | 172.3[01].*) return 0 ;;
    100.6[4-9].* | 100.[7-9][0-9].* | 100.1[01][0-9].* | 100.12[0-7].*) return 0 ;;
  esac
  return 1
}

main() {
HEARTH_SERVER=${HEARTH_SERVER:-${RM_SERVER:-}}
HEARTH_TOKEN=${HEARTH_TOKEN:-${RM_TOKEN:-}}
HEARTH_FORCE_REENROLL=${HEARTH_FORCE_REENROLL:-${RM_FORCE_REENROLL:-0}}
export HEARTH_TOKEN
server=${HEARTH_SERVER:-}
server=${server%/}
prefix=${HEARTH_PREFIX:-}
[ -n "$server" ] || die "HEARTH_SERVER is not set: run it as
  curl -fsSL \$SERVER/install.sh | sudo HEARTH_SERVER=\$SERVER HEARTH_TOKEN=\$TOKEN sh"

# The agent is code this host will run as root: it comes over https, or plain http from
# this very host or a private address (the agent itself sends its token over plain http
# to no other), or plain http only when asked for.
case $server in
  *@*) die "HEARTH_SERVER must not hold a user name or password ($server has '@'); give the collector's URL alone." ;;
  https://*) ;;
  http://*)
    private_address "$server" || [ "${HEARTH_ALLOW_HTTP:-0}" = 1 ] || die "HEARTH_SERVER is plain http ($server): anyone on the way could swap the agent.
  Use the collector's https:// address (its --public-url), or set HEARTH_ALLOW_HTTP=1 on a network you trust." ;;
  *) die "HEARTH_SERVER must be the collector's URL, starting with https:// (it is $server)." ;;
esac
# Redirects never lead from https to plain http.
curl_proto=
case $server in https://*) curl_proto="--proto =https --proto-redir =https" ;; esac

bin_dir=$prefix/usr/local/bin
bin=$bin_dir/hearth-agent
conf_dir=$prefix/etc/hearth
env_file=$conf_dir/agent.env
state_dir=$prefix/var/lib/hearth-agent

if [ -z "$prefix" ] && [ "$(id -u)" != 0 ]; then
  die "this installs a system service, so it needs root: pipe it to \`sudo … sh\`.
  Without root, install the binary yourself and run \`hearth-agent install-service --user\`."
fi

if [ -x "$bin" ] && [ -s "$state_dir/token" ] && [ "${HEARTH_FORCE_REENROLL:-0}" != 1 ]; then
  say "already installed and enrolled (node $(cat "$state_dir/node_id" 2>/dev/null || echo '?')); nothing to do."
  say "To install and enrol again, set HEARTH_FORCE_REENROLL=1 with a fresh token."
  exit 0
fi
[ -n "${HEARTH_TOKEN:-}" ] || die "HEARTH_TOKEN is not set: mint one in the dashboard (\"Add a node\") or with
  \`hearth-collector token create\`, then run the command it gives."

os=$(uname -s)
[ "$os" = Linux ] || die "Hearth's agent runs on Linux; this is $os."
arch=${HEARTH_ARCH:-$(uname -m)}
case $arch in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  armv7l | armv7* | armhf) arch=armv7l ;;
  armv6l) arch=armv6l ;;
  riscv64) ;;
  *) die "there is no Hearth agent for this machine ($arch); agents exist for x86_64, aarch64, armv7l, armv6l and riscv64." ;;
esac

# fetch URL FILE: downloads, and on failure explains; an HTTP error shows the collector's message.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # curl_proto is two options, or none
    status=$(curl -sS -L $curl_proto -o "$2" -w '%{http_code}' "$1" 2>"$2.err") || {
      die "cannot reach the collector at $server: $(cat "$2.err"). Check HEARTH_SERVER, and that this host can reach it."
    }
  elif command -v wget >/dev/null 2>&1; then
    if wget -q -O "$2" "$1" 2>"$2.err"; then status=200; else
      die "cannot download $1 (wget: $(cat "$2.err")). Check HEARTH_SERVER, and that this host can reach it."
    fi
  else
    die "this needs curl or wget to download the agent."
  fi
  if [ "$status" != 200 ]; then
    die "the collector answered $status for $1: $(cat "$2")"
  fi
}

# agent_config FILE: what the new agent makes of FILE alone (`config show`).
agent_config() {
  (unset HEARTH_COLLECTOR_URL VAULTMESH_CC_URL HEARTH_NODE_ID VAULTMESH_NODE_ID
   HEARTH_CONFIG="$1" HEARTH_STATE_DIR="$state_dir" "$bin.new" config show)
}

# reports_to FILE: whether the new agent, given FILE, reports to $server.
reports_to() {
  agent_config "$1" 2>/dev/null | awk -v want="$server" '$1 == "collector:" && $2 == want { found = 1 } END { exit !found }'
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# Until the agent has enrolled: the node id `enroll` keeps, and the directories made.
enrolled=
undo() {
  [ -z "$enrolled" ] || return 0
  if [ -n "${made_state:-}" ]; then rm -f "$state_dir/node_id"; rmdir "$state_dir" 2>/dev/null || true; fi
  if [ -n "${made_conf:-}" ]; then rmdir "$conf_dir" 2>/dev/null || true; fi
  if [ -n "${made_bin:-}" ]; then rmdir "$bin_dir" 2>/dev/null || true; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -f "$bin.new" "$env_file.new"; undo' EXIT
trap 'exit 130' INT TERM HUP
say "downloading the agent for linux/$arch from $server"
fetch "$server/agent/binary?os=linux&arch=$arch" "$tmp/hearth-agent"
fetch "$server/agent/binary.sha256?os=linux&arch=$arch" "$tmp/hearth-agent.sha256"
want=$(cut -d' ' -f1 "$tmp/hearth-agent.sha256")
got=$(sha256 "$tmp/hearth-agent")
[ "$want" = "$got" ] || die "the download is damaged: its SHA-256 is $got, the collector says $want. Nothing was installed; try again."

# Everything is made beside what it replaces and checked, and the new agent enrols, before
# anything is replaced: a refused token or a bad agent.env leaves an agent that runs here
# already, its binary and its settings as they were.
# The directories this run makes, it takes away again if it stops before enrolment (a
# refused token, say): `undo`, on exit.
made_bin=; made_conf=; made_state=
[ -d "$bin_dir" ] || made_bin=1
[ -d "$conf_dir" ] || made_conf=1
[ -d "$state_dir" ] || made_state=1
mkdir -p "$bin_dir"
install -m 0755 "$tmp/hearth-agent" "$bin.new"
umask 077
mkdir -p "$conf_dir" "$state_dir"
chmod 0700 "$conf_dir" "$state_dir"
url_line='^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}HEARTH_COLLECTOR_URL[[:space:]]*='
settings=$env_file
if [ -f "$env_file" ]; then
  if grep -q '^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}HEARTH_STATE_DIR[[:space:]]*=' "$env_file"; then
    die "$env_file sets HEARTH_STATE_DIR, but this installer keeps the agent's state in $state_dir.
  Remove that line (or enrol by hand with \`hearth-agent enroll\`). Nothing was changed."
  fi
  # An agent.env kept from before keeps its settings; only the collector's URL is this one.
  if ! reports_to "$env_file"; then
    [ ! -L "$env_file" ] || die "$env_file is a link (kept by your configuration management?): set
  HEARTH_COLLECTOR_URL=$server in the file it points to, then run this again. Nothing was changed."
    { grep -v "$url_line" "$env_file" || true
      echo
      echo "HEARTH_COLLECTOR_URL=$server"
    } >"$env_file.new"
    settings=$env_file.new
  fi
else
  {
    echo "# Hearth agent settings, written by the installer; see \`hearth-agent --help\`."
    echo "HEARTH_COLLECTOR_URL=$server"
    if ! command -v cloudflared >/dev/null 2>&1; then
      echo "# No cloudflared here, so no service is checked by default. List the ones to watch:"
      echo "HEARTH_CHECK_SERVICES="
    fi
  } >"$env_file.new"
  settings=$env_file.new
fi
reports_to "$settings" || die "the agent would not report to $server with these settings:
  $(agent_config "$settings" 2>&1 | grep -v '^ ' | head -n 3)
  Check $env_file (its HEARTH_COLLECTOR_URL lines, and a last line ending in a backslash). Nothing was changed."

# A signal from here on is taken once the new agent is in place, not halfway: the token
# is spent once enrolment succeeds.
interrupted=
trap 'interrupted=1' INT TERM HUP
# The token goes through the environment, never the command line (where ps would show it).
if ! out=$(HEARTH_CONFIG="$settings" HEARTH_STATE_DIR="$state_dir" "$bin.new" enroll 2>&1); then
  case $out in
    *"answered 410"*) die "the token has expired or was already used: mint a fresh one and run the new command.
  ($out)" ;;
    *) die "enrolment failed: $out" ;;
  esac
fi
enrolled=1
if [ "$settings" != "$env_file" ]; then
  mv -f "$env_file.new" "$env_file" || die "enrolled, but cannot write $env_file; make it writable, set
  HEARTH_COLLECTOR_URL=$server in it, and restart the agent"
  say "wrote $env_file"
fi
mv -f "$bin.new" "$bin"
trap 'exit 130' INT TERM HUP
say "installed $bin ($("$bin" --version))"
say "$out"
[ -z "$interrupted" ] || die "interrupted; the agent is installed and enrolled, but its service was not (re)started"

if [ "${HEARTH_NO_SYSTEMD:-0}" = 1 ] || [ -n "$prefix" ] || [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
  say "systemd is not running here, so no service was installed. Run the agent yourself, e.g. from
  your init system or a terminal:
    HEARTH_CONFIG=$env_file HEARTH_STATE_DIR=$state_dir $bin run"
  exit 0
fi
"$bin" install-service
say "done: this host reports to $server every 30 s."
}

main "$@"
