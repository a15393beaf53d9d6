"""The `georollout` command: notify georollout of a pushed image, wait for its rollout, show
where rollouts stand. A client of the function app's HTTP API only; it never reads the table
or talks to Azure itself."""
