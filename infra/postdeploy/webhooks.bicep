// One ACR webhook per replica region. A webhook created in a replica's region fires when a push
// has replicated into that replica (a regional webhook); georollout takes it as a hint and probes.
// The webhook URLs carry a function key of acr_hook's own (`webhookKeyName`), never the host's
// default key: that one opens every function-level function (the rollouts API too), whereas this
// key opens acr_hook alone and can be rotated or revoked without touching anything else.

param registryName string
param functionAppName string

@description('Comma-separated georollout regions, primary first.')
param regions string

param webhookTokenHeader string
param webhookTokenPrefix string

@secure()
@description('The ACR webhook token, from Key Vault.')
param webhookToken string

param repositoryScope string = ''

@description('Name of acr_hook\'s function key the webhooks call with; the post-deploy hook creates it.')
param webhookKeyName string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// The function behind /api/hooks/acr (function_app.py: acr_hook, auth level FUNCTION).
resource acrHookFunction 'Microsoft.Web/sites/functions@2024-04-01' existing = {
  parent: functionApp
  name: 'acr_hook'
}

var regionNames = split(replace(regions, ' ', ''), ',')
// The function's keys by name (POST .../functions/acr_hook/listkeys answers {"<name>": "<value>"});
// read at deployment time, so the key never passes through parameters or the hook script.
var functionKey = acrHookFunction.listKeys()[webhookKeyName]
var hookUrl = 'https://${functionApp.properties.defaultHostName}/api/hooks/acr'

resource regionalWebhooks 'Microsoft.ContainerRegistry/registries/webhooks@2023-07-01' = [for region in regionNames: {
  parent: registry
  name: 'georollout${region}'
  location: region
  properties: {
    serviceUri: '${hookUrl}?region=${region}&code=${functionKey}'
    customHeaders: {
      '${webhookTokenHeader}': '${webhookTokenPrefix}${webhookToken}'
    }
    status: 'enabled'
    scope: repositoryScope
    actions: [
      'push'
    ]
  }
}]

output names array = [for (region, i) in regionNames: regionalWebhooks[i].name]
