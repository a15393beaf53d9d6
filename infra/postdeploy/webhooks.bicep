// One ACR webhook per replica region. A webhook created in a replica's region fires when a push
// has replicated into that replica (a regional webhook); georollout takes it as a hint and probes.

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

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: functionApp
  name: 'default'
}

var regionNames = split(replace(regions, ' ', ''), ',')
var functionKey = functionHost.listKeys().functionKeys.default
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
