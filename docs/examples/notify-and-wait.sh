#!/usr/bin/env bash
# Tell georollout that this build pushed an image, then wait until the image is live in every
# region. Plain bash, curl, openssl and jq, for Jenkins or any CI without the georollout command.
#
# Environment:
#   IMAGE                            <login server>/<repository>@sha256:<64 hex>: the digest the
#                                    push reported, never a tag (a tag can move to another image)
#   GEOROLLOUT_URL                   the function app, e.g. https://func-abc123.azurewebsites.net
#   GEOROLLOUT_FUNCTION_KEY          a function key (Azure; the local host needs none)
#   GEOROLLOUT_BUILD_WEBHOOK_SECRET  whsec_... from the CI system's secret store
#   TAG, BUILD_SYSTEM, BUILD_ID, BUILD_URL, BUILD_COMMIT, BUILD_SOURCE
#                                    optional; shown in the rollout (Jenkins sets BUILD_ID and
#                                    BUILD_URL itself)
#   TIMEOUT_SECONDS (1800), POLL_SECONDS (10)
# Exit (as `georollout wait`): 0 live in every region; 1 failed, rolled back, superseded,
# timed out or ignored; 2 bad input; 3 the notice or a request refused; 124 TIMEOUT_SECONDS
# passed first.
set -euo pipefail

die() {
  echo "notify-and-wait: $*" >&2
  exit 2
}

refused() {
  echo "notify-and-wait: $*" >&2
  exit 3
}

[[ -n "${GEOROLLOUT_URL:-}" ]] || die "GEOROLLOUT_URL is not set"
[[ "${IMAGE:-}" =~ ^[^@/]+/[^@]+@sha256:[0-9a-f]{64}$ ]] ||
  die "IMAGE must be <login server>/<repository>@sha256:<64 hex>, got '${IMAGE:-}'"
timeout_seconds=${TIMEOUT_SECONDS:-1800}
poll_seconds=${POLL_SECONDS:-10}
[[ "$timeout_seconds" =~ ^[0-9]+$ && "$poll_seconds" =~ ^[1-9][0-9]*$ ]] ||
  die "TIMEOUT_SECONDS and POLL_SECONDS must be whole seconds"
base_url=${GEOROLLOUT_URL%/}

# The HMAC key is the base64-decoded part after whsec_ (Standard Webhooks), as hex for openssl.
# Never echoed: messages name the variable, not its value.
secret=${GEOROLLOUT_BUILD_WEBHOOK_SECRET:-}
secret=${secret//[$'\t\r\n ']/}
[[ "$secret" =~ ^whsec_[A-Za-z0-9+/]+={0,2}$ ]] ||
  die "GEOROLLOUT_BUILD_WEBHOOK_SECRET must be whsec_ followed by base64"
key_hex=$(printf '%s' "${secret#whsec_}" | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \n')
unset secret
((${#key_hex} >= 32)) || die "GEOROLLOUT_BUILD_WEBHOOK_SECRET must hold at least 16 bytes"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The function key goes in a header read from a file descriptor, so it never appears in curl's
# command line (visible to every process on the machine).
key_header() {
  if [[ -n "${GEOROLLOUT_FUNCTION_KEY:-}" ]]; then
    printf 'x-functions-key: %s\n' "$GEOROLLOUT_FUNCTION_KEY"
  fi
}

# api METHOD PATH OUTPUT [curl options...]: prints the HTTP status (000: no answer). curl retries
# timeouts, 408, 429 and 5xx by itself; a retried notice carries the same webhook-id, which
# georollout answers as it answered the first delivery.
api() {
  local method=$1 path=$2 output=$3
  shift 3
  curl --silent --show-error --max-time 30 --retry 4 --retry-connrefused \
    --request "$method" --output "$output" --write-out '%{http_code}' \
    --header @<(key_header) "$@" "$base_url$path" || true
}

# The error an answer carries ({"error": {"code", "message"}}), or the start of its body.
error_of() {
  jq -er '.error | select(. != null) | "\(.code): \(.message)"' "$1" 2>/dev/null ||
    head -c 500 "$1"
}

# The notice: image, tag and build, as compact JSON; it is signed and sent byte for byte.
body=$(jq -cn --arg image "$IMAGE" --arg tag "${TAG:-}" \
  --arg system "${BUILD_SYSTEM:-}" --arg id "${BUILD_ID:-}" --arg url "${BUILD_URL:-}" \
  --arg commit "${BUILD_COMMIT:-}" --arg source "${BUILD_SOURCE:-}" '
  {image: $image}
  + (if $tag == "" then {} else {tags: [$tag]} end)
  + ({system: $system, id: $id, url: $url, commit: $commit, source: $source}
     | with_entries(select(.value != ""))
     | if . == {} then {} else {build: .} end)')

message_id="msg_$(openssl rand -hex 16)"
timestamp=$(date +%s)
# openssl takes the key on its command line (it has no other way); use the georollout command
# where other users' processes share the machine.
signature=$(printf '%s.%s.%s' "$message_id" "$timestamp" "$body" |
  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | openssl base64 -A)
unset key_hex

status=$(api POST /api/hooks/build "$work/notice.json" \
  --header "Content-Type: application/json" \
  --header "webhook-id: $message_id" \
  --header "webhook-timestamp: $timestamp" \
  --header "webhook-signature: v1,$signature" \
  --data-binary "$body")
[[ "$status" != 000 ]] || refused "no answer from $base_url"
[[ "$status" == 202 ]] || refused "the notice was refused ($status): $(error_of "$work/notice.json")"
rollout=$(jq -r '.rollout' "$work/notice.json")
[[ "$rollout" =~ ^[A-Za-z0-9._~-]+$ ]] || refused "unexpected answer to the notice: $(head -c 500 "$work/notice.json")"
echo "notify-and-wait: georollout recorded $IMAGE as rollout $rollout"

deadline=$((SECONDS + timeout_seconds))
last=""
seen=""
while true; do
  status=$(api GET "/api/rollouts/$rollout" "$work/rollout.json")
  pause=$poll_seconds
  if [[ "$status" == 200 ]]; then
    seen=yes
    state=$(jq -r '.state' "$work/rollout.json")
    progress="$state ($(jq -r '[.regions[] | "\(.region) \(.state)"] | join(", ")' "$work/rollout.json"))"
    if [[ "$progress" != "$last" ]]; then
      echo "notify-and-wait: $rollout: $progress"
      last=$progress
    fi
    case "$state" in
      live) exit 0 ;;
      failed | rolled_back | superseded | timed_out | ignored)
        echo "notify-and-wait: the rollout ended $state" >&2
        jq -r '(.step_error // empty | "  \(.)"),
          (.regions[] | select(.last_error != null) | "  \(.region): \(.last_error)")' \
          "$work/rollout.json" >&2
        exit 1
        ;;
    esac
  elif [[ "$status" == 404 && -z "$seen" ]]; then
    # The 202 means the notice is kept; its rollout is stored right behind the answer (within
    # seconds; up to 2 s later while a burst of pushes is being answered): ask again soon.
    if [[ "$last" != "not recorded yet" ]]; then
      echo "notify-and-wait: $rollout is not recorded yet; asking again"
      last="not recorded yet"
    fi
    pause=1
  elif [[ "$status" == 4* ]]; then
    refused "GET /api/rollouts/$rollout answered $status: $(error_of "$work/rollout.json")"
  else
    # No answer or a 5xx even after curl's retries: say so and keep polling until the deadline.
    echo "notify-and-wait: GET /api/rollouts/$rollout answered ${status}; trying again" >&2
  fi
  remaining=$((deadline - SECONDS))
  if ((remaining <= 0)); then
    echo "notify-and-wait: not live after ${timeout_seconds}s (last: ${last:-no answer})" >&2
    exit 124
  fi
  sleep $((remaining < pause ? remaining : pause))
done
