// Grants a role on one user-assigned identity (Managed Identity Operator: attaching an
// endpoint identity to the online endpoints georollout creates).

param identityName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  'f1a07417-d97a-45cb-824c-7a7467783830' // Managed Identity Operator
])
param roleDefinitionId string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(identity.id, principalId, roleDefinitionId)
  scope: identity
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
