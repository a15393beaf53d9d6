// Grants a role on one Key Vault secret, not the vault (Key Vault Secrets User: resolving the
// webhook token's Key Vault reference).

param keyVaultName string
param secretName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
])
param roleDefinitionId string

@description('Kind of principal: the function app (ServicePrincipal) or the person running azd (User).')
@allowed([
  'ServicePrincipal'
  'User'
])
param principalType string = 'ServicePrincipal'

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  name: '${keyVaultName}/${secretName}'
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secret.id, principalId, roleDefinitionId)
  scope: secret
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
