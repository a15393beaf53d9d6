// Grants a role on one Event Grid topic (EventGrid Data Sender: publishing georollout's events).

param topicName string

@description('Principal (object) id that receives the role.')
param principalId string

@description('Built-in role definition id (GUID); only the roles listed fit this scope.')
@allowed([
  'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender
])
param roleDefinitionId string

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, roleDefinitionId)
  scope: topic
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output id string = assignment.id
