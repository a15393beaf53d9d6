// georollout on Azure: `azd up` deploys the registry, storage, Event Grid, Key Vault, monitoring,
// the endpoint identities and the function app, and grants the function's identity exactly the
// roles it needs. Subscription scope: it creates the resource group, and the role assignments on
// each region's existing workspace are deployed into that workspace's own resource group.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of the resource group, the function app, storage, Key Vault, monitoring and the events topic (a region with Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@minLength(1)
@description('Comma-separated georollout regions, primary first (e.g. eastus,westus). The registry lives in the first; each other one gets a geo-replica.')
param regions string

@minLength(1)
@description('Comma-separated Azure ML / Foundry workspace resource ids, one per region, in the order of regions.')
param workspaceIds string

@secure()
@description('The ACR webhook token. main.parameters.json has azd generate it once and read it back from Key Vault.')
param acrWebhookToken string

@secure()
@description('The build webhook\'s signing secrets (comma-separated whsec_ values). main.parameters.json has azd read them back from Key Vault; before the secret exists, a random password that the Key Vault module turns into a whsec_ secret.')
param buildWebhookSecrets string

@secure()
@description('A random azd password drawn on every provision; only the first provision uses it, as the second half of the generated build webhook secret.')
param buildWebhookSecretEntropy string

@description('Object id of the person running azd (azd fills it in); lets azd read the webhook token back on the next provision.')
param deployerPrincipalId string = ''

@description('Resource group name; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('Registry name (5-50 letters and digits); empty for a generated one.')
param registryName string = ''

@description('Table georollout keeps its rollouts in.')
param tableName string = 'rollouts'

@description('Path (in the deployed package) of an extra PEM CA bundle the clients trust; empty in Azure, where the system CAs suffice.')
param caBundle string = ''

@description('NCRONTAB schedule of the replica probe timer (seconds first).')
param probeSchedule string = '*/30 * * * * *'

@description('Registry requests the probes may make per minute (a small share of the ACR Premium read budget).')
param probeBudgetPerMinute string = '600'

@description('Probes in flight at once.')
param probeConcurrency string = '16'

@description('First back-off after a throttled or failed probe (seconds).')
param probeBackoffInitialSeconds string = '15'

@description('Longest back-off between probes of one region (seconds).')
param probeBackoffMaxSeconds string = '300'

@description('Base replication timeout per region (minutes).')
param replicationTimeoutMinutes string = '60'

@description('Extra replication timeout per GB of image (minutes).')
param replicationTimeoutMinutesPerGb string = '10'

@description('Short name of this georollout deployment, the {instance} in endpoint names (1-12 lowercase letters, digits, hyphens). Empty: the app derives it from the registry login server and the primary workspace id.')
param instanceName string = ''

@description('Target rules (JSON, first match wins); the default is one catch-all rule, one endpoint per repository named {repository}-{instance}, unique in its region.')
param targets string = '[{"repository": "*", "tag": "*", "endpoint": "{repository}-{instance}"}]'

@description('Instance type of the online deployments georollout creates.')
param instanceType string = 'Standard_DS3_v2'

@description('Instance count of the online deployments georollout creates.')
param instanceCount string = '1'

@description('Smoke request body sent to a new deployment before traffic moves (JSON).')
param smokeRequest string = '{"input": "ping"}'

@description('Auth mode of the online endpoints georollout creates (key, aml_token or aad_token).')
param endpointAuthMode string = 'key'

@description('Seconds before a region with a deployment in progress is looked at again.')
param deployPollSeconds string = '10'
@description('Hours a replica still without the image is probed before its region stays timed_out.')
param replicationGiveUpHours string = '24'
@description('Seconds one smoke request may take (Azure ML scores within 5 s by default).')
param smokeTimeoutSeconds string = '5'
@description('Minutes the deployment that served before a rollout is kept (0% traffic) after the rollout settled, so a rollback is a traffic change; 0 deletes it at once.')
param keepPreviousMinutes string = '60'
@description('Level of the Azure SDK loggers: WARNING keeps their problems only; INFO or DEBUG adds a record of every HTTP request (for debugging a connection).')
param azureSdkLogLevel string = 'WARNING'

@description('Application (client) id of the Entra ID app registration operators get tokens for (infra/README.md, "Operator routes behind Entra ID"). Empty: no App Service authentication in front of the function app.')
param operatorAuthClientId string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var regionNames = split(replace(regions, ' ', ''), ',')
var workspaceIdList = split(replace(workspaceIds, ' ', ''), ',')
var primaryRegion = first(regionNames)
var functionAppName = '${abbrs.functionApp}${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var deadLetterContainerName = 'eventgrid-deadletter'
var webhookTokenSecretName = 'acr-webhook-token'
// main.parameters.json reads this secret back by the same name.
var buildWebhookSecretsName = 'build-webhook-secrets'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourceGroup}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module monitoring 'core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.logAnalytics}${resourceToken}'
    applicationInsightsName: '${abbrs.applicationInsights}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageAccount}${resourceToken}'
    location: location
    tags: tags
    containerNames: [
      deploymentContainerName
      deadLetterContainerName
    ]
    tableName: tableName
  }
}

module registry 'app/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: empty(registryName) ? '${abbrs.containerRegistry}${resourceToken}' : registryName
    location: primaryRegion
    replicaLocations: skip(regionNames, 1)
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module events 'app/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    systemTopicName: '${abbrs.systemTopic}${resourceToken}'
    eventsTopicName: '${abbrs.eventGridTopic}${resourceToken}'
    registryLocation: primaryRegion
    registryId: registry.outputs.id
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module keyVault 'core/security/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: '${abbrs.keyVault}${resourceToken}'
    location: location
    tags: tags
    webhookTokenSecretName: webhookTokenSecretName
    webhookToken: acrWebhookToken
    buildWebhookSecretsName: buildWebhookSecretsName
    buildWebhookSecrets: buildWebhookSecrets
    buildWebhookSecretEntropy: buildWebhookSecretEntropy
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module endpointIdentities 'app/endpoint-identities.bicep' = {
  name: 'endpoint-identities'
  scope: rg
  params: {
    regionNames: regionNames
    namePrefix: '${abbrs.managedIdentity}endpoint-${resourceToken}-'
    tags: tags
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.appServicePlan}${resourceToken}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    regionNames: regionNames
    workspaceIds: workspaceIdList
    endpointIdentityIds: endpointIdentities.outputs.ids
    registryName: registry.outputs.name
    registryLoginServer: registry.outputs.loginServer
    tableEndpoint: storage.outputs.tableEndpoint
    tableName: storage.outputs.tableName
    eventsTopicEndpoint: events.outputs.eventsTopicEndpoint
    webhookTokenSecretUri: keyVault.outputs.webhookTokenSecretUri
    buildWebhookSecretsUri: keyVault.outputs.buildWebhookSecretsUri
    caBundle: caBundle
    probeSchedule: probeSchedule
    probeBudgetPerMinute: probeBudgetPerMinute
    probeConcurrency: probeConcurrency
    probeBackoffInitialSeconds: probeBackoffInitialSeconds
    probeBackoffMaxSeconds: probeBackoffMaxSeconds
    replicationTimeoutMinutes: replicationTimeoutMinutes
    replicationTimeoutMinutesPerGb: replicationTimeoutMinutesPerGb
    instanceName: instanceName
    targets: targets
    instanceType: instanceType
    instanceCount: instanceCount
    smokeRequest: smokeRequest
    endpointAuthMode: endpointAuthMode
    deployPollSeconds: deployPollSeconds
    replicationGiveUpHours: replicationGiveUpHours
    smokeTimeoutSeconds: smokeTimeoutSeconds
    keepPreviousMinutes: keepPreviousMinutes
    azureSdkLogLevel: azureSdkLogLevel
    operatorAuthClientId: operatorAuthClientId
  }
}

// Roles of the function's identity, each at the narrowest scope that works.

module functionAcrPull 'core/security/registry-role.bicep' = {
  name: 'function-acr-pull'
  scope: rg
  params: {
    registryName: registry.outputs.name
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  }
}

module functionTableData 'core/security/storage-table-role.bicep' = {
  name: 'function-table-data'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    tableName: storage.outputs.tableName
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  }
}

module functionBlobData 'core/security/storage-account-role.bicep' = {
  name: 'function-blob-data'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    principalId: functionApp.outputs.principalId
    roleDefinitionId: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  }
}

module functionQueueData 'core/security/storage-account-role.bicep' = {
  name: 'function-queue-data'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '974c5e8b-45b9-4653-ba55-5f855dd0a970'
  }
}

module functionEventsSender 'core/security/event-grid-topic-role.bicep' = {
  name: 'function-events-sender'
  scope: rg
  params: {
    topicName: events.outputs.eventsTopicName
    principalId: functionApp.outputs.principalId
    roleDefinitionId: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  }
}

module functionWebhookTokenReader 'core/security/key-vault-secret-role.bicep' = {
  name: 'function-webhook-token-reader'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    secretName: keyVault.outputs.webhookTokenSecretName
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '4633458b-17de-408a-b874-0445c86b69e6'
  }
}

module functionBuildWebhookSecretsReader 'core/security/key-vault-secret-role.bicep' = {
  name: 'function-build-webhook-secrets-reader'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    secretName: keyVault.outputs.buildWebhookSecretsName
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '4633458b-17de-408a-b874-0445c86b69e6'
  }
}

module functionTelemetry 'core/security/app-insights-role.bicep' = {
  name: 'function-telemetry'
  scope: rg
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: functionApp.outputs.principalId
    roleDefinitionId: '3913510d-42f4-4e42-8a64-420c390055eb'
  }
}

// Each workspace may sit in another resource group or subscription: deploy there.
module functionWorkspaceRoles 'core/security/workspace-role.bicep' = [for (workspaceId, i) in workspaceIdList: {
  name: 'function-workspace-${i}'
  scope: resourceGroup(split(workspaceId, '/')[2], split(workspaceId, '/')[4])
  params: {
    workspaceName: last(split(workspaceId, '/'))
    principalId: functionApp.outputs.principalId
    roleDefinitionId: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  }
}]

module functionIdentityOperator 'core/security/identity-role.bicep' = [for (region, i) in regionNames: {
  name: 'function-identity-operator-${region}'
  scope: rg
  params: {
    identityName: endpointIdentities.outputs.names[i]
    principalId: functionApp.outputs.principalId
    roleDefinitionId: 'f1a07417-d97a-45cb-824c-7a7467783830'
  }
}]

// Roles of the other identities.

// azd reads the webhook token back (secretOrRandomPassword) with the deployer's own identity.
module deployerWebhookTokenReader 'core/security/key-vault-secret-role.bicep' = if (!empty(deployerPrincipalId)) {
  name: 'deployer-webhook-token-reader'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    secretName: keyVault.outputs.webhookTokenSecretName
    principalId: deployerPrincipalId
    roleDefinitionId: '4633458b-17de-408a-b874-0445c86b69e6'
    principalType: 'User'
  }
}

// Likewise for the build webhook's secrets: azd reads them back so a provision keeps them.
module deployerBuildWebhookSecretsReader 'core/security/key-vault-secret-role.bicep' = if (!empty(deployerPrincipalId)) {
  name: 'deployer-build-webhook-secrets-reader'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    secretName: keyVault.outputs.buildWebhookSecretsName
    principalId: deployerPrincipalId
    roleDefinitionId: '4633458b-17de-408a-b874-0445c86b69e6'
    principalType: 'User'
  }
}

module endpointAcrPull 'core/security/registry-role.bicep' = [for (region, i) in regionNames: {
  name: 'endpoint-acr-pull-${region}'
  scope: rg
  params: {
    registryName: registry.outputs.name
    principalId: endpointIdentities.outputs.principalIds[i]
    roleDefinitionId: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  }
}]

module systemTopicDeadLetter 'core/security/storage-container-role.bicep' = {
  name: 'system-topic-dead-letter'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    containerName: deadLetterContainerName
    principalId: events.outputs.systemTopicPrincipalId
    roleDefinitionId: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  }
}

module eventsTopicDeadLetter 'core/security/storage-container-role.bicep' = {
  name: 'events-topic-dead-letter'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    containerName: deadLetterContainerName
    principalId: events.outputs.eventsTopicPrincipalId
    roleDefinitionId: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  }
}

// azd keeps these in the environment; the post-deploy hook and `make demo` read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output GEOROLLOUT_FUNCTION_URL string = 'https://${functionApp.outputs.defaultHostName}'
output GEOROLLOUT_REGIONS string = join(regionNames, ',')
output GEOROLLOUT_REGISTRY_NAME string = registry.outputs.name
output GEOROLLOUT_REGISTRY_LOGIN_SERVER string = registry.outputs.loginServer
output GEOROLLOUT_SYSTEM_TOPIC_NAME string = events.outputs.systemTopicName
output GEOROLLOUT_EVENTS_TOPIC_NAME string = events.outputs.eventsTopicName
output GEOROLLOUT_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output GEOROLLOUT_DEAD_LETTER_CONTAINER string = deadLetterContainerName
output GEOROLLOUT_WEBHOOK_TOKEN_SECRET_NAME string = webhookTokenSecretName
output GEOROLLOUT_BUILD_WEBHOOK_SECRETS_NAME string = buildWebhookSecretsName
