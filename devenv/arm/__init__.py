"""Foundry / Azure ML ARM emulator: managed online endpoints and deployments for one workspace per region.

An HTTPS server (aiohttp, the local CA) on loopback that answers the ARM calls
azure-ai-ml 1.35.2's `MLClient` makes, with Azure's long-running-operation
semantics, and fails a deployment, as Azure does, when its digest-pinned image
is not in the registry replica of the workspace's own region.

Start it with `devenv.arm.launcher.start_arm_emulator(env, tls)`; point MLClient
at it with `cloud=LOCAL_CLOUD_NAME, cloud_metadata=devenv.arm.cloud.cloud_metadata(env.arm_url),
connection_verify=str(tls.ca_pem)`.

Verified by running the real SDK against this server (tests/integration/devenv/test_arm_emulator.py;
`{ws}` = `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{w}`,
`{e}` = `{ws}/onlineEndpoints/{name}`):

- api-versions seen: 2022-02-01-preview (endpoints), 2023-04-01-preview (deployments,
  environments), 2024-10-01-preview (workspace). Any api-version is accepted.
- GET `{ws}` before every endpoint or deployment PUT; the SDK reads `location`.
- PUT `{e}` (create and every traffic change, full body); GET `{e}`, then GET `{e}/deployments`
  (to fill zero weights); GET `{ws}/onlineEndpoints`; DELETE `{e}`; POST `{e}/listKeys`.
  Fields read: `name`, `properties.authMode`, `.scoringUri`, `.traffic`, `.provisioningState`.
- The SDK strips zero weights from `traffic` and lower-cases deployment names before it
  sends the map; on get it adds every deployment without traffic back with weight 0.
- Deployment create: GET `{e}` -> PUT `{ws}/environments/CliV2AnonymousEnvironment/versions/{v}`
  (`properties.image`) -> GET `{ws}` -> PUT `{e}/deployments/{d}` -> operation polls -> GET
  `{e}/deployments/{d}`. Fields read: `id`, `name`, `sku.capacity`, `properties.environmentId`,
  `.endpointComputeType`, `.scaleSettings.scaleType`, `.provisioningState`.
- GET/DELETE `{e}/deployments/{d}`, GET `{e}/deployments`, POST `{e}/deployments/{d}/getLogs`
  (`{"content": ...}`).
- PUTs answer 201 and DELETEs 202, with an absolute `Azure-AsyncOperation` (and `Location`)
  plus `retry-after-ms`; the SDK polls
  `/subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/{region}/mfeOperationsStatus/{id}`
  for `{id, name, status: Updating|Succeeded|Failed|Canceled, startTime, endTime, percentComplete, error}`.
  A Failed operation's `error.code`/`error.message` reach `HttpResponseError.error`.

Beyond the SDK's calls:
- POST `/score/{workspace}/{endpoint}` (each endpoint's `scoringUri`): `Authorization: Bearer <key or
  AMLToken>` (any bearer for AADToken endpoints); `azureml-model-deployment: <name>` picks a deployment, otherwise the traffic weights do.
  Answers `{deployment, endpoint, workspace, region, image, digest, request_bytes}`; 401 bad key,
  404 no such deployment or no positive weight, 424 deployment not live.
- GET `/emulator/audit` (bearer needed): `{"records": [...]}`, append-only, also in `<state_dir>/arm/audit.jsonl`.
- POST `/emulator/endpoints/<workspace name>/<endpoint>/fail` (bearer needed): the endpoint's
  provisioningState becomes `Failed`, as an Azure endpoint can end; its next PUT provisions it again.
  Actions: deployment_create / deployment_update (with `image_present_at_create`), deployment_provisioned /
  deployment_failed, deployment_deleted, traffic_changed, endpoint_deleted.
- GET `/emulator/health` (no auth), used by the launcher.

Knobs (written by the launcher into `<state_dir>/arm/config.json`):
- `LocalEnv.arm_provisioning_s`: how long an endpoint or deployment create/update operation runs
  (traffic changes and deletes take a quarter of it).
- `start_arm_emulator(..., endpoint_settle_s=)` (default `config.DEFAULT_ENDPOINT_SETTLE_S`, 1.5 s;
  0 turns it off): how long an endpoint still says `Updating` after its own operation reported
  `Succeeded`, as Azure's do (Azure/azure-sdk-for-net#36961). Meanwhile deployment PUTs and
  endpoint PUTs (traffic) are refused with 409; a DELETE is not.

Rules enforced (traffic sum and names follow Azure; the weight-to-Succeeded, delete-with-traffic and 409
rules are this emulator's reading of Azure, not verified against it): traffic weights are integers summing
to 100 (or 0), naming existing deployments, positive weight only to a Succeeded deployment (400 BadArgument otherwise); a deployment
with traffic cannot be deleted (400); a second write while an operation runs on the same resource is 409;
a deployment PUT (create or update) while its endpoint's provisioningState is not terminal (not
Succeeded, Failed or Canceled; also while it settles) is 409 `Conflict` "Cannot create a deployment in
endpoint {ep} because it is in {state} provisioning state." (Azure's message, from
Azure/azure-sdk-for-net#36961; the 409 is ARM's rule for a write that meets an operation in progress,
Azure/azure-resource-manager-rpc v1.0/Addendum.md: that issue's stored copy ends before its status line);
the image must be `<host>/<repository>@sha256:<hex>` (400 otherwise). A missing manifest or an
unreachable replica fails the operation with code `ImagePullFailed`.
"""
