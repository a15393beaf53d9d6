#!/usr/bin/env bash
# Push the image this build made, take its digest from docker push, and hand it to
# notify-and-wait.sh (next to this file): the build step for Jenkins or any other CI.
#
# Environment: REGISTRY (login server, e.g. contoso.azurecr.io), REPOSITORY (e.g. models/llm),
# TAG (the tag the image was built with), docker logged in to the registry, and everything
# notify-and-wait.sh reads. Exits as notify-and-wait.sh does (0 only once live everywhere).
set -euo pipefail

: "${REGISTRY:?REGISTRY is not set}" "${REPOSITORY:?REPOSITORY is not set}" "${TAG:?TAG is not set}"
ref="$REGISTRY/$REPOSITORY:$TAG"

# The digest docker push reports ("<tag>: digest: sha256:... size: ...") is the one this job
# pushed. Asking the registry for the tag afterwards could answer with a later push of the same
# tag by another job.
digest=$(docker push "$ref" | tee /dev/stderr |
  sed -n 's/^.*digest: \(sha256:[0-9a-f]\{64\}\).*$/\1/p' | tail -n 1)
if [[ -z "$digest" ]]; then
  echo "push-notify-wait: docker push reported no digest for $ref" >&2
  exit 2
fi

IMAGE="$REGISTRY/$REPOSITORY@$digest" TAG="$TAG" \
  exec "$(dirname "${BASH_SOURCE[0]}")/notify-and-wait.sh"
