"""The engine's Python client: everything that starts, signals, queries or updates a workflow.

One small module per concern, typed and async; each function takes a connected
`temporalio.client.Client` (client.connection.connect) first:

- client.connection: connect with the engine's settings (TemporalUnreachable on failure);
- client.warmups: start, pause, resume, read and cancel IP warmups (IpWarmupWorkflow);
- client.failovers: start or join a FailoverSaga, list open ones, approve or deny a held one;
- client.scans: run the real BlocklistScanWorkflow now and wait for its summary;
- client.deploys: ask an MTA host's MtaDeployWorkflow for a deploy and wait for it;
- client.status: the fleet at a glance (database sections plus Temporal);
- client.chatops: a Telegram button press becomes the signal or update stored for it;
- client.relay: activities that relay a workflow's request to another workflow through the client;
- client.errors: the typed refusals (UnknownIp, NotRunning, TemporalUnreachable, ...).

Workflow contracts (inputs, states, statuses, ids) are in models/*_contracts.py and models/deploys.py.
Nothing is imported here, so `import client.warmups` loads only what warmups need.
"""
