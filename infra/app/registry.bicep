// The ACR Premium registry georollout watches: geo-replicated into every secondary region, with
// regional endpoints (<name>.<region>.geo.azurecr.io) so a probe can ask one replica directly.
// Pulls and pushes authenticate with Entra ID only: no admin user, no anonymous pull.

param name string

@description('Home region of the registry: the primary georollout region.')
param location string

@description('Regions that get a geo-replica (every georollout region but the home one).')
param replicaLocations array

param tags object = {}

@description('Log Analytics workspace that receives the registry\'s logs and metrics.')
param logAnalyticsWorkspaceId string

// regionalEndpoints exists only in the preview API (az acr update --regional-endpoints).
resource registry 'Microsoft.ContainerRegistry/registries@2025-05-01-preview' = {
  // checkov:skip=CKV_AZURE_233:Zone redundancy is only available in some regions (and is on by default where it is); each replica region is a parameter, so the template cannot demand it.
  // checkov:skip=CKV_AZURE_166:Quarantine would hide every push from pulls until a scanner releases it, so probes would report not replicated; scanning belongs to the team's pipeline.
  // checkov:skip=CKV_AZURE_139:Azure ML online endpoints and georollout's probes (Flex Consumption without VNet) pull over the public endpoint; anonymous pull and the admin user are off.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Premium'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    regionalEndpoints: 'Enabled'
    dataEndpointEnabled: false
    publicNetworkAccess: 'Enabled'
    networkRuleBypassOptions: 'AzureServices'
    zoneRedundancy: 'Disabled'
    policies: {
      // Untagged-manifest retention stays off on purpose. georollout deploys by digest, and once a
      // tag moves on to a newer image the digest that is still live in a region (mid-rollout, or
      // kept after a failed one) is untagged; retention would purge it after `days`, and that
      // region's endpoints could no longer pull it (scale-out, node repair). ACR's own warning:
      // do not set it for systems that pull by digest
      // (https://learn.microsoft.com/azure/container-registry/container-registry-retention-policy).
      // Teams that want retention lock each serving digest instead
      // (az acr repository update --write-enabled false --delete-enabled false): retention skips
      // a manifest whose delete-enabled is false. See infra/README.md.
      retentionPolicy: {
        days: 30
        status: 'disabled'
      }
      softDeletePolicy: {
        retentionDays: 7
        status: 'disabled'
      }
    }
  }
}

// regionEndpointEnabled keeps each replica behind the global login server as well.
resource replications 'Microsoft.ContainerRegistry/registries/replications@2023-07-01' = [for replicaLocation in replicaLocations: {
  // checkov:skip=CKV_AZURE_233:Zone redundancy is only available in some regions; the replica regions are a parameter, so the template cannot demand it.
  parent: registry
  name: replicaLocation
  location: replicaLocation
  tags: tags
  properties: {
    regionEndpointEnabled: true
    zoneRedundancy: 'Disabled'
  }
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'georollout-registry'
  scope: registry
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = registry.name
output id string = registry.id
output loginServer string = registry.properties.loginServer
