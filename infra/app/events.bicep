// Event Grid for georollout: the system topic on the registry (ACR push events in) and the
// topic georollout publishes its own events to (CloudEvents 1.0, Entra ID publishing only).
// Both have a system-assigned identity so their subscriptions can dead-letter into storage.

@description('Name of the system topic on the registry.')
param systemTopicName string

@description('Name of the topic for georollout\'s own events.')
param eventsTopicName string

@description('Region of the registry (a system topic lives where its source does).')
param registryLocation string

param registryId string
param location string
param tags object = {}
param logAnalyticsWorkspaceId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: registryLocation
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: registryId
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193:georollout's Flex Consumption app has no VNet integration, so it reaches this over the public endpoint; access is Entra ID only (disableLocalAuth).
  name: eventsTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource systemTopicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'georollout-system-topic'
  scope: systemTopic
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

resource eventsTopicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'georollout-events-topic'
  scope: eventsTopic
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

output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
output eventsTopicName string = eventsTopic.name
output eventsTopicId string = eventsTopic.id
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
output eventsTopicPrincipalId string = eventsTopic.identity.principalId
