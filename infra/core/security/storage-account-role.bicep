// Grants a data role on the whole storage account: the Functions host creates its own
// containers and queues (azure-webjobs-*), so its blob and queue roles cannot be narrower.

param storageAccountName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  '974c5e8b-45b9-4653-ba55-5f855dd0a970' // Storage Queue Data Contributor
])
param roleDefinitionId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
