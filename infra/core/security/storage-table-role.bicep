// Grants a data role on one table (georollout's rollouts table), not the whole account.

param storageAccountName string
param tableName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
])
param roleDefinitionId string

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  name: '${storageAccountName}/default/${tableName}'
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(table.id, principalId, roleDefinitionId)
  scope: table
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
