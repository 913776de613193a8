"""Pulumi components that deploy Streamer: tables, one regional stack per region, and the
build and plan commands that go with them (`python -m components.package`,
`python -m components.plan`).
"""
