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

Beyond the SDK's calls (routing and the deployment knobs: tests/integration/devenv/test_arm_emulator_routing.py):
- POST `/score/{workspace}/{endpoint}` (each endpoint's `scoringUri`): `Authorization: Bearer <key or
  AMLToken>` (any bearer for AADToken endpoints); `azureml-model-deployment: <name>` picks a deployment, otherwise the traffic weights do.
  Answers `{deployment, endpoint, workspace, region, image, digest, request_bytes}` with the response
  header `azureml-model-deployment: <name>`; 401 bad key, 404 no such deployment or no positive weight
  to a live deployment, 424 deployment not live (provisioningState not Succeeded/Updating, or
  nothing serving yet), or the deployment's scoring fault (below).
  Routing by weight is deterministic, unlike Azure's random pick, so tests can count: a smooth
  weighted round-robin (nginx's) per endpoint, kept in memory, over the live deployments with positive
  weight, taken in name order (ties go to the name that sorts first). With {new: 10, old: 90} exactly 1
  of every 10 consecutive calls goes to `new`; {a: 50, b: 50} alternates, `a` first. The rotation starts
  over when the endpoint's traffic map changes, when the set of live weighted deployments changes
  (a non-live deployment is skipped, its weight left out), and when the emulator restarts.
- GET `/emulator/audit` (bearer needed): `{"records": [...]}`, append-only, also in `<state_dir>/arm/audit.jsonl`.
- POST `/emulator/endpoints/<workspace name>/<endpoint>/fail` (bearer needed): the endpoint's
  provisioningState becomes `Failed`, as an Azure endpoint can end; its next PUT provisions it again.
- POST `/emulator/deployments/<workspace name>/<endpoint>/<deployment>/scoring` (bearer needed), body
  `{"status": <integer 400-599>, "message": "<optional, non-empty>"}`: every scoring call that deployment
  serves, chosen by header or by weight (it keeps its place in the rotation), answers that status with
  `{"error": {"code": "<status>", "message": ...}}` and the `azureml-model-deployment` header; body
  `{"status": null}` restores normal answers. Answers 200 `{"deployment", "scoringFault": {status,
  message} | null}`; 400 `BadArgument` for a body that is not such an object (other fields, a status
  outside 400-599 or not an integer, a message with a null status), changing nothing; 404
  `ResourceNotFound` for an unknown workspace, endpoint or deployment. The fault lives in the
  deployment's record: it survives the deployment's updates and restarts, and a deployment deleted and
  created again under the same name starts healthy.
- POST `/emulator/deployments/<workspace name>/<endpoint>/<deployment>/fail` (bearer needed, no body):
  a deployment whose provisioningState is Succeeded (or already Failed) becomes `Failed` and stops
  serving, as an Azure deployment whose update or scale operation failed ends (this emulator's reading
  of Azure, not verified against it). The SDK's `online_deployments.get` then shows
  `provisioning_state == "Failed"`; scoring with its header answers 424, routing by weight skips it (404
  when no live weighted deployment is left), and an endpoint PUT that leaves it a positive weight is
  refused (400, as for any deployment not Succeeded or Updating): traffic can only be taken from it.
  A PUT of the deployment provisions it again. Answers 200 `{"provisioningState": "Failed"}`; 409 `Conflict` while the deployment is Creating, Updating or Deleting; 404 as above.
- Audit actions: deployment_create / deployment_update (with `image_present_at_create`), deployment_provisioned /
  deployment_failed, deployment_deleted, traffic_changed, endpoint_deleted; scoring_fault_set
  (`workspace`, `region`, `endpoint`, `deployment`, `status`, `message`; both null when cleared);
  deployment_unhealthy (`workspace`, `region`, `endpoint`, `deployment`, `image`, `digest`,
  `previous_state`).
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
