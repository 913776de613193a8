"""Lambda entry points, one module per function so each imports only what it needs.

Handler strings (`module.function`) as configured on the functions.
"""

AUTHORIZER = "streamer.entry.authorizer.handler"
CONNECT = "streamer.entry.connect.handler"
DISCONNECT = "streamer.entry.disconnect.handler"
ROUTER = "streamer.entry.router.handler"
PROCESSOR = "streamer.entry.processor.handler"
SWEEPER = "streamer.entry.sweeper.handler"
HTTP = "streamer.entry.http.handler"
PUBLISH = "streamer.entry.publish.handler"
POLLER = "streamer.entry.poller.handler"
