// One user-assigned identity per georollout region: the online endpoints georollout creates in
// that region pull the model image with it (AcrPull is granted in main.bicep).

@description('Georollout regions; one identity each, created in that region.')
param regionNames array

@description('Prefix of the identity names; the region is appended.')
param namePrefix string

param tags object = {}

resource endpointIdentities 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = [for region in regionNames: {
  name: '${namePrefix}${region}'
  location: region
  tags: tags
}]

output ids array = [for (region, i) in regionNames: endpointIdentities[i].id]
output names array = [for (region, i) in regionNames: endpointIdentities[i].name]
output principalIds array = [for (region, i) in regionNames: endpointIdentities[i].properties.principalId]
