"""The local Kubernetes control plane for tests, CI and the demo.

Public surface: `cluster.ensure_up()`, `cluster.stop()`, `cluster.status()`,
`cluster.ClusterInfo`, `build.build_all()`, and `python -m scorefleet.dev
build|up|env|status|down`. See docs/control-plane.md.
"""
