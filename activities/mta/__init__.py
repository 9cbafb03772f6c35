"""MTA backends: one interface (activities.mta.base), one module per backend, deploy on top.

- base.py: MtaBackendImpl protocol, RenderedConfig, Target protocol (where commands run and files
  live: local or SSH), CommandResult, the backend registry `backend_for(MtaBackend)`.
- powermta.py / postfix.py: the backends (pure renderers live in models/mta_render/).
- local.py: LocalTarget and a local deploy (write, validate, reload, roll back on failure).
- ssh.py / deploy.py: SSH target, release-based deploys, the deploy activity.
- render_dir.py: write a render into a local directory (`mta render`, the run command).
Other workflows ask for a deploy through client/relay.py ("deploy_tenant_pool").
"""
