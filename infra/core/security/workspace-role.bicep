// Grants a role on one existing Azure ML / Foundry workspace; deploy it with the workspace's
// resource group as scope. AzureML Data Scientist may create and update online endpoints and
// deployments, but not compute or the workspace itself.

param workspaceName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  'f6c7c914-8db3-469d-8ca1-694a8f32e121' // AzureML Data Scientist
])
param roleDefinitionId string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleDefinitionId)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
