// The georollout function app: Flex Consumption, Python 3.11, system-assigned identity, and
// every setting georollout reads. Storage, the table, the topic and Key Vault are reached with
// the managed identity; the secrets (the ACR webhook token, the build webhook's signing secrets)
// are Key Vault references.

param name string
param planName string
param location string
param tags object = {}

@description('azd service name (azure.yaml) this app deploys.')
param serviceName string = 'api'

param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string

@description('Georollout regions in order, primary first.')
param regionNames array

@description('Azure ML / Foundry workspace resource ids, one per region, in the order of regionNames.')
param workspaceIds array

@description('User-assigned identity resource ids for the online endpoints, one per region, in the order of regionNames.')
param endpointIdentityIds array

param registryName string
param registryLoginServer string
param tableEndpoint string
param tableName string
param eventsTopicEndpoint string
param webhookTokenSecretUri string
@description('Key Vault URI (versionless) of the build webhook\'s signing secrets.')
param buildWebhookSecretsUri string

param caBundle string
param probeSchedule string
param probeBudgetPerMinute string
param probeConcurrency string
param probeBackoffInitialSeconds string
param probeBackoffMaxSeconds string
param replicationTimeoutMinutes string
param replicationTimeoutMinutesPerGb string
@description('The {instance} of endpoint names; empty: derived by the app.')
param instanceName string
param targets string
param instanceType string
param instanceCount string
param smokeRequest string
param endpointAuthMode string
param deployPollSeconds string
@description('Hours a replica still without the image is probed before its region stays timed_out.')
param replicationGiveUpHours string
@description('Seconds one smoke request may take.')
param smokeTimeoutSeconds string
@description('Minutes the previous deployment is kept (0% traffic) after a rollout settled.')
param keepPreviousMinutes string
@description('Level of the Azure SDK loggers (WARNING, or INFO/DEBUG for every request).')
param azureSdkLogLevel string

@description('Flex Consumption instance memory (MB).')
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int = 40

@description('Application (client) id of the Entra ID app registration that operators get tokens for. Empty: no App Service authentication (Easy Auth) in front of the app, as before.')
param operatorAuthClientId string = ''

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy exists only in some regions; the app keeps no state (Table Storage does) and Event Grid retries, so a zone outage only delays work.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Per-region settings: the region part of each name is the upper-cased region (Azure region
// names are lowercase letters and digits only, so nothing else needs replacing).
var regionRegistryEndpointSettings = [for region in regionNames: {
  name: 'GEOROLLOUT_REGION_${toUpper(region)}_REGISTRY_ENDPOINT'
  value: 'https://${registryName}.${region}.geo.azurecr.io'
}]

var regionWorkspaceSettings = [for (region, i) in regionNames: {
  name: 'GEOROLLOUT_REGION_${toUpper(region)}_WORKSPACE_ID'
  value: workspaceIds[i]
}]

var regionEndpointIdentitySettings = [for (region, i) in regionNames: {
  name: 'GEOROLLOUT_REGION_${toUpper(region)}_ENDPOINT_IDENTITY_ID'
  value: endpointIdentityIds[i]
}]

// The Functions host reaches its storage with the managed identity (no connection string).
// APPLICATIONINSIGHTS_CONNECTION_STRING holds no secret here: the component refuses its
// instrumentation key alone (local auth off) and the host authenticates with Entra ID.
var hostSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
]

var georolloutSettings = [
  {
    name: 'GEOROLLOUT_TABLE_ENDPOINT'
    value: tableEndpoint
  }
  {
    name: 'GEOROLLOUT_TABLE_NAME'
    value: tableName
  }
  {
    name: 'GEOROLLOUT_REGISTRY_LOGIN_SERVER'
    value: registryLoginServer
  }
  {
    name: 'GEOROLLOUT_REGIONS'
    value: join(regionNames, ',')
  }
  {
    name: 'GEOROLLOUT_ARM_ENDPOINT'
    value: environment().resourceManager
  }
  {
    name: 'GEOROLLOUT_CA_BUNDLE'
    value: caBundle
  }
  {
    name: 'GEOROLLOUT_EVENTS_TOPIC_ENDPOINT'
    value: eventsTopicEndpoint
  }
  {
    name: 'GEOROLLOUT_PROBE_SCHEDULE'
    value: probeSchedule
  }
  {
    name: 'GEOROLLOUT_PROBE_BUDGET_PER_MINUTE'
    value: probeBudgetPerMinute
  }
  {
    name: 'GEOROLLOUT_PROBE_CONCURRENCY'
    value: probeConcurrency
  }
  {
    name: 'GEOROLLOUT_PROBE_BACKOFF_INITIAL_SECONDS'
    value: probeBackoffInitialSeconds
  }
  {
    name: 'GEOROLLOUT_PROBE_BACKOFF_MAX_SECONDS'
    value: probeBackoffMaxSeconds
  }
  {
    name: 'GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES'
    value: replicationTimeoutMinutes
  }
  {
    name: 'GEOROLLOUT_REPLICATION_TIMEOUT_MINUTES_PER_GB'
    value: replicationTimeoutMinutesPerGb
  }
  {
    name: 'GEOROLLOUT_INSTANCE_NAME'
    value: instanceName
  }
  {
    name: 'GEOROLLOUT_TARGETS'
    value: targets
  }
  {
    name: 'GEOROLLOUT_INSTANCE_TYPE'
    value: instanceType
  }
  {
    name: 'GEOROLLOUT_INSTANCE_COUNT'
    value: instanceCount
  }
  {
    name: 'GEOROLLOUT_SMOKE_REQUEST'
    value: smokeRequest
  }
  {
    name: 'GEOROLLOUT_ENDPOINT_AUTH_MODE'
    value: endpointAuthMode
  }
  {
    name: 'GEOROLLOUT_DEPLOY_POLL_SECONDS'
    value: deployPollSeconds
  }
  {
    name: 'GEOROLLOUT_REPLICATION_GIVE_UP_HOURS'
    value: replicationGiveUpHours
  }
  {
    name: 'GEOROLLOUT_SMOKE_TIMEOUT_SECONDS'
    value: smokeTimeoutSeconds
  }
  {
    name: 'GEOROLLOUT_KEEP_PREVIOUS_MINUTES'
    value: keepPreviousMinutes
  }
  {
    name: 'GEOROLLOUT_AZURE_SDK_LOG_LEVEL'
    value: azureSdkLogLevel
  }
  {
    name: 'GEOROLLOUT_ACR_WEBHOOK_TOKEN'
    value: '@Microsoft.KeyVault(SecretUri=${webhookTokenSecretUri})'
  }
  // Versionless: a rotation's new value reaches the app on the next restart or reference
  // refresh (infra/README.md), without a deployment.
  {
    name: 'GEOROLLOUT_BUILD_WEBHOOK_SECRETS'
    value: '@Microsoft.KeyVault(SecretUri=${buildWebhookSecretsUri})'
  }
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Event Grid, ACR webhooks and operators call the app over its public endpoint; routes are guarded by function keys, the Event Grid system key and the webhook token.
  // checkov:skip=CKV_AZURE_17:Event Grid and ACR webhooks cannot present client certificates.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero on demand; Event Grid and the timers retry, so no instance needs to stand by.
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check; /api/health serves that purpose for probes and availability tests.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(hostSettings, georolloutSettings, regionRegistryEndpointSettings, regionWorkspaceSettings, regionEndpointIdentitySettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Basic-auth publishing (FTP and SCM) off: azd deploys with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Easy Auth in front of the app (infra/README.md, "Operator routes behind Entra ID"), only
// when an app registration is given. Callers send a bearer token (no browser sign-in, so no
// client secret); every route needs one except those below, which their callers cannot
// present one to. The function keys stay required behind it: Easy Auth only adds a check.
var unauthenticatedPaths = [
  '/api/hooks/acr' // ACR webhooks: the acrwebhook function key and the webhook token
  '/api/hooks/build' // build systems: the function key and the Standard Webhooks signature
  '/api/health' // anonymous liveness (not /api/health/detail, which stays behind both)
  '/runtime/webhooks/eventgrid' // Event Grid deliveries: the Event Grid system key
]

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(operatorAuthClientId)) {
  // checkov:skip=CKV_AZURE_13:checkov reads the V1 authsettings schema (properties.enabled); this authsettingsV2 resource turns authentication on with platform.enabled.
  // checkov:skip=CKV_AZURE_63:HTTP logging is a setting of the site's web config, which checkov applies to every sites/config resource; authsettingsV2 has no such property.
  // checkov:skip=CKV_AZURE_65:Detailed error messages are a setting of the site's web config, not of authsettingsV2 (checkov applies it to every sites/config resource).
  // checkov:skip=CKV_AZURE_66:Failed request tracing is a setting of the site's web config, not of authsettingsV2 (checkov applies it to every sites/config resource).
  // checkov:skip=CKV_AZURE_80:The .NET Framework version is a setting of the site's web config, not of authsettingsV2; the app runs Python anyway.
  // checkov:skip=CKV_AZURE_88:Azure Files mounts are a setting of the site's azurestorageaccounts config, not of authsettingsV2; the app keeps no files.
  // checkov:skip=CKV_AZURE_222:Public network access is a property of the site (see its own suppression), not of authsettingsV2.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: unauthenticatedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: operatorAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // The client id is always an allowed audience (v2.0 tokens); v1.0 tokens carry the
          // Application ID URI instead.
          allowedAudiences: [
            'api://${operatorAuthClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = functionApp.name
output id string = functionApp.id
output principalId string = functionApp.identity.principalId
output defaultHostName string = functionApp.properties.defaultHostName
