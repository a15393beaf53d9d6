// What needs the deployed function code, applied by the azd postdeploy hook (idempotent: a
// deployment re-applies the same state): Event Grid subscriptions whose destination is a
// function, and one ACR webhook per replica region whose URL carries acr_hook's own function key
// (`webhookKeyName`, which the hook creates once and reuses).

@description('Name of the function app (azd output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

param registryName string
param systemTopicName string
param eventsTopicName string
param storageAccountName string
param deadLetterContainerName string
param keyVaultName string
param webhookTokenSecretName string

@description('Comma-separated georollout regions, primary first.')
param regions string

@description('Header that carries the webhook token on every ACR webhook call.')
param webhookTokenHeader string = 'Authorization'

@description('Text before the token in that header.')
param webhookTokenPrefix string = 'Bearer '

@description('Repository scope of the ACR webhooks (e.g. models/*:*); empty for every repository.')
param webhookRepositoryScope string = ''

@description('Name of the acr_hook function key the ACR webhooks call with (created by the hook).')
param webhookKeyName string = 'acrwebhook'

@description('Delivery attempts before Event Grid dead-letters an event.')
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before dead-lettering it.')
param eventTimeToLiveInMinutes int = 1440

@description('Types of georollout\'s own events that drive the completion function.')
param rolloutEventTypes array = [
  'georollout.replica.available'
  'georollout.replication.completed'
  'georollout.replication.timedout'
  'georollout.region.live'
  'georollout.region.failed'
  'georollout.rollout.finished'
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: eventsTopicName
}

// Dead letters go to storage with the topic's own identity (the account takes no shared keys).
var deadLetter = {
  identity: {
    type: 'SystemAssigned'
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: storage.id
      blobContainerName: deadLetterContainerName
    }
  }
}

var retryPolicy = {
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}

resource imagePushed 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'image-pushed-to-function'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_image_pushed'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource rolloutEvents 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = {
  parent: eventsTopic
  name: 'rollout-events-to-function'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_rollout_event'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: rolloutEventTypes
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

// getSecret() hands the token to the module as a secure parameter: it never appears in this
// deployment's inputs, outputs or history.
module webhooks 'webhooks.bicep' = {
  name: 'georollout-acr-webhooks'
  params: {
    registryName: registryName
    functionAppName: functionAppName
    regions: regions
    webhookTokenHeader: webhookTokenHeader
    webhookTokenPrefix: webhookTokenPrefix
    webhookToken: vault.getSecret(webhookTokenSecretName)
    repositoryScope: webhookRepositoryScope
    webhookKeyName: webhookKeyName
  }
}

output imagePushedSubscriptionId string = imagePushed.id
output rolloutEventsSubscriptionId string = rolloutEvents.id
output webhookNames array = webhooks.outputs.names
