// Key Vault for georollout's two secrets, the ACR webhook token and the build webhook's signing
// secrets. RBAC authorisation only; the function app reads each through a Key Vault reference
// with its managed identity.

param name string
param location string
param tags object = {}

@description('Name of the secret that holds the ACR webhook token.')
param webhookTokenSecretName string

@secure()
@description('The ACR webhook token (azd generates it once and reads it back from this vault).')
param webhookToken string

@description('Name of the secret that holds the build webhook\'s signing secrets (GEOROLLOUT_BUILD_WEBHOOK_SECRETS).')
param buildWebhookSecretsName string

@secure()
@description('What azd read back from this vault for that secret (whsec_ values, comma-separated), or, before the secret exists, a random 15-character azd password.')
param buildWebhookSecrets string

@secure()
@description('Another random azd password, drawn afresh on every provision; used only while the secret does not exist yet.')
param buildWebhookSecretEntropy string

param logAnalyticsWorkspaceId string

// The build webhook's secret must be `whsec_` + base64 of random bytes (Standard Webhooks).
// Bicep cannot draw random bytes, but azd's secretOrRandomPassword draws random strings (15
// letters and digits, about 83 bits) and Bicep can base64 a string. The first time (no secret
// in the vault, so no whsec_ value) two such passwords become one secret: base64 of 30 random
// characters, a 30-byte HMAC key of about 166 bits. Afterwards azd reads the stored value back
// and it is written back unchanged, so a re-provision never rotates it and keeps a rotation's
// comma-separated list as the operator left it (infra/README.md, "Build webhook secret").
var generatedBuildWebhookSecret = 'whsec_${base64('${buildWebhookSecrets}${buildWebhookSecretEntropy}')}'
var buildWebhookSecretsValue = startsWith(buildWebhookSecrets, 'whsec_') ? buildWebhookSecrets : generatedBuildWebhookSecret

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

resource buildWebhookSecretsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:Senders sign with this secret from their CI secret stores; an expiry would silently refuse every build notice. Rotate by hand with the overlap in infra/README.md.
  parent: vault
  name: buildWebhookSecretsName
  properties: {
    value: buildWebhookSecretsValue
    contentType: 'text/plain; georollout build webhook secrets (comma-separated whsec_ values)'
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
output buildWebhookSecretsName string = buildWebhookSecretsSecret.name
output buildWebhookSecretsUri string = buildWebhookSecretsSecret.properties.secretUri
