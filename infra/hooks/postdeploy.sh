#!/usr/bin/env bash
# azd postdeploy hook: applies infra/postdeploy/main.bicep, the parts that need the deployed
# function code (Event Grid subscriptions to functions, ACR webhooks with the function key).
# Idempotent: a deployment re-applies the same state, so running it again changes nothing.
# Needs the Azure CLI signed in to the azd environment's subscription (az login).
set -euo pipefail

readonly functions=(on_image_pushed on_rollout_event)
readonly index_timeout_seconds=${GEOROLLOUT_FUNCTION_INDEX_TIMEOUT:-600}

require() {
  local name
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      echo "postdeploy: $name is not set; run 'azd provision' first" >&2
      exit 1
    fi
  done
}

# A subscription whose destination is a function is refused until the host has indexed that
# function, which happens some seconds after the package lands: wait for each, with a deadline.
wait_for_functions() {
  local deadline=$((SECONDS + index_timeout_seconds)) function_name
  for function_name in "${functions[@]}"; do
    until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
      --name "$AZURE_FUNCTION_APP_NAME" --function-name "$function_name" \
      --only-show-errors --output none 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        echo "postdeploy: function $function_name not indexed after ${index_timeout_seconds}s" >&2
        exit 1
      fi
      sleep 10
    done
    echo "postdeploy: function $function_name is deployed"
  done
}

main() {
  require AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_KEY_VAULT_NAME \
    GEOROLLOUT_REGIONS GEOROLLOUT_REGISTRY_NAME GEOROLLOUT_SYSTEM_TOPIC_NAME \
    GEOROLLOUT_EVENTS_TOPIC_NAME GEOROLLOUT_STORAGE_ACCOUNT_NAME \
    GEOROLLOUT_DEAD_LETTER_CONTAINER GEOROLLOUT_WEBHOOK_TOKEN_SECRET_NAME

  local template
  template="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/postdeploy/main.bicep"

  az account set --subscription "$AZURE_SUBSCRIPTION_ID"
  wait_for_functions

  az deployment group create \
    --name georollout-postdeploy \
    --resource-group "$AZURE_RESOURCE_GROUP" \
    --template-file "$template" \
    --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    registryName="$GEOROLLOUT_REGISTRY_NAME" \
    systemTopicName="$GEOROLLOUT_SYSTEM_TOPIC_NAME" \
    eventsTopicName="$GEOROLLOUT_EVENTS_TOPIC_NAME" \
    storageAccountName="$GEOROLLOUT_STORAGE_ACCOUNT_NAME" \
    deadLetterContainerName="$GEOROLLOUT_DEAD_LETTER_CONTAINER" \
    keyVaultName="$AZURE_KEY_VAULT_NAME" \
    webhookTokenSecretName="$GEOROLLOUT_WEBHOOK_TOKEN_SECRET_NAME" \
    regions="$GEOROLLOUT_REGIONS" \
    --only-show-errors \
    --output none
  echo "postdeploy: Event Grid subscriptions and ACR webhooks are in place"
}

main "$@"
