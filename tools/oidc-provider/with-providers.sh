#!/usr/bin/env bash
# Runs a command while three local OpenID providers are up, and stops them
# (only them, by process id) when it ends:
#   CHAT_TEST_OIDC_ISSUER         the provider the tests sign in with
#   CHAT_TEST_OIDC_OTHER_ISSUER   a second, unrelated issuer (mix-up tests)
#   CHAT_TEST_OIDC_SKEWED_ISSUER  a provider whose clock runs 5 minutes slow
#                                 and whose ID tokens live 60 s: they arrive expired
# Installs the provider's npm packages first when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$here/node_modules/oidc-provider" ] || (cd "$here" && npm ci --no-audit --no-fund >&2)

logs=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap stop EXIT

# start VAR [server.js args...]: starts a provider, sets VAR to its issuer.
# (Not run in a subshell, so its process id reaches `pids`.)
start() {
  local var=$1 name=$1; shift
  node "$here/server.js" "$@" >"$logs/$name.out" 2>"$logs/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    if grep -q issuer "$logs/$name.out" 2>/dev/null; then
      printf -v "$var" '%s' "$(sed -n 's/.*"issuer":"\([^"]*\)".*/\1/p' "$logs/$name.out")"
      export "${var?}"
      return
    fi
    sleep 0.1
  done
  echo "oidc provider '$name' did not start:" >&2
  cat "$logs/$name.err" >&2
  exit 1
}

start CHAT_TEST_OIDC_ISSUER
start CHAT_TEST_OIDC_OTHER_ISSUER
start CHAT_TEST_OIDC_SKEWED_ISSUER --clock-skew -300 --id-token-ttl 60
echo "oidc providers: $CHAT_TEST_OIDC_ISSUER $CHAT_TEST_OIDC_OTHER_ISSUER $CHAT_TEST_OIDC_SKEWED_ISSUER" >&2
"$@"
