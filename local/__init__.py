"""The local stack: API Gateway, Lambda and DynamoDB played on one machine.

`python -m local` runs the unchanged Lambda entry points of `streamer.entry`
behind a WebSocket gateway, an `@connections` management API and a DynamoDB
Streams event source mapping, against moto or DynamoDB Local. See docs/local.md.
"""
