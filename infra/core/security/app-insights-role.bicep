// Grants a role on the Application Insights component (Monitoring Metrics Publisher: sending
// telemetry with Entra ID, since the component's local key authentication is off).

param applicationInsightsName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
])
param roleDefinitionId string

resource component 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(component.id, principalId, roleDefinitionId)
  scope: component
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
