// Key Vault for georollout's one secret, the ACR webhook token. RBAC authorisation only; the
// function app reads the secret through a Key Vault reference with its managed identity.

param name string
param location string
param tags object = {}

@description('Name of the secret that holds the ACR webhook token.')
param webhookTokenSecretName string

@secure()
@description('The ACR webhook token (azd generates it once and reads it back from this vault).')
param webhookToken string

param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Key Vault references of a function app without VNet integration resolve over the public endpoint; RBAC-only vault.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: the function app resolves its Key Vault reference over the public endpoint.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    // The post-deploy template hands the token to the ACR webhooks with getSecret().
    enabledForTemplateDeployment: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource webhookTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:The token has no natural expiry; an expired secret would silently break the Key Vault reference and every webhook. Rotate by deleting the secret and re-running azd up.
  parent: vault
  name: webhookTokenSecretName
  properties: {
    value: webhookToken
    contentType: 'text/plain; georollout ACR webhook token'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'georollout-key-vault'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output webhookTokenSecretName string = webhookTokenSecret.name
output webhookTokenSecretUri string = webhookTokenSecret.properties.secretUri
