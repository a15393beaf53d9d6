#!/usr/bin/env bash
# azd postdeploy hook: applies infra/postdeploy/main.bicep, the parts that need the deployed
# function code (Event Grid subscriptions to functions, ACR webhooks with acr_hook's own key).
# Idempotent: the webhook key is created once and reused, and a deployment re-applies the same
# state, so running it again changes nothing.
# Needs the Azure CLI signed in to the azd environment's subscription (az login).
set -euo pipefail

readonly webhook_function=acr_hook
readonly webhook_key_name=acrwebhook
readonly functions=(on_image_pushed on_rollout_event "$webhook_function")
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

# A subscription whose destination is a function, and a key on a function, are refused until the
# host has indexed that function, which happens some seconds after the package lands: wait for
# each, with a deadline.
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

# The ACR webhooks call acr_hook with a function key of its own rather than the host's default
# key (which opens every function): create it only when it is missing, so a re-run neither
# rotates it nor breaks webhooks already calling with it. `keys set` without --key-value lets
# Functions generate the value; neither command prints it (the query asks only whether the
# name exists), and postdeploy/webhooks.bicep reads it with listKeys() at deployment time.
ensure_webhook_key() {
  local present
  present=$(az functionapp function keys list --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name "$webhook_function" \
    --query "contains(keys(@), '$webhook_key_name')" --only-show-errors --output tsv)
  if [[ "$present" == "true" ]]; then
    echo "postdeploy: function key $webhook_key_name of $webhook_function exists; reusing it"
    return
  fi
  az functionapp function keys set --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name "$webhook_function" \
    --key-name "$webhook_key_name" --only-show-errors --output none
  echo "postdeploy: created function key $webhook_key_name of $webhook_function"
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
  ensure_webhook_key

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
    webhookKeyName="$webhook_key_name" \
    --only-show-errors \
    --output none
  echo "postdeploy: Event Grid subscriptions and ACR webhooks are in place"
}

main "$@"
