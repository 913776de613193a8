"""What the conversation remembers: requests, system calls, topics and connections."""

from __future__ import annotations

from dataclasses import dataclass, field

from client.conversation.outputs import Handle


@dataclass
class Waiting:
    """The answer an owner awaits for what was last sent for it, and any resend planned."""

    # The connection it was sent on (None: not sent, or the answer came).
    conn: int | None = None
    sent_at: int = 0
    # When the answer timeout ends the call (None: no timeout running).
    deadline: int | None = None
    resend_at: int | None = None
    resend_text: str | None = None
    # Per refusing code: refusals in a row since anything else came, and when the first did.
    refused: dict[str, tuple[int, int]] = field(default_factory=dict)

    def heard(self, conn: int) -> None:
        """A message about the owner arrived on `conn`."""
        self.refused.clear()
        if self.conn == conn:
            self.conn = None
            self.deadline = None

    def forget_connection(self) -> None:
        """The connection went away: the resume sends again and starts new timers."""
        self.conn = None
        self.deadline = None
        self.resend_at = None
        self.resend_text = None


@dataclass
class Watcher:
    """One call awaiting a request: `call`, `send` (sync only), `subscribe` or `cancel`."""

    handle: Handle
    kind: str


@dataclass
class TrackedRequest:
    """A request some call awaits."""

    request_id: str
    # The request itself until the server answers it (sent again on a resume).
    pending_text: str | None = None
    # Whether this client made the id (then its first connection is the owner).
    fresh: bool = False
    fresh_on: int | None = None
    # An id the application chose that was tracked here before and ended:
    # until the server answers this request, a `progress` or `complete` is
    # the earlier tracking's `subscribe` snapshot arriving late.
    again: bool = False
    sends: int = 0
    conflict_repeats: int = 0
    # `seq` starts at 1: a subscribe snapshot with seq 0 (nothing reported yet) is no news.
    last_seq: int = 0
    message_ids: set[str] = field(default_factory=set)
    watchers: list[Watcher] = field(default_factory=list)
    wait: Waiting = field(default_factory=Waiting)

    def is_new(self, seq: int | None) -> bool:
        """Whether an update with this `seq` is news; remembers it if so."""
        if seq is None:
            return True
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True


@dataclass
class SystemCall:
    """A pending `ping`, `status`, `cancel` or `unsubscribe` (of a request or a topic)."""

    message_id: str
    action: str
    text: str
    handle: Handle
    target: str | None = None
    topic: str | None = None
    wait: Waiting = field(default_factory=Waiting)

    @property
    def answer(self) -> str:
        """The type of the answer it awaits."""
        return {"ping": "pong", "unsubscribe": "unsubscribed"}.get(self.action, "status")


@dataclass
class TopicSubscription:
    """A topic this client follows; subscribed again on every new connection."""

    topic: str
    # The subscribe_topic calls following it (each gets on_notification).
    handles: list[Handle] = field(default_factory=list)
    # Calls still awaiting the first `subscribed` (or retained notification).
    unconfirmed: list[Handle] = field(default_factory=list)
    confirmed: bool = False
    message_ids: set[str] = field(default_factory=set)
    wait: Waiting = field(default_factory=Waiting)


@dataclass
class Connection:
    """One WebSocket connection the conversation asked for."""

    number: int
    token: str
    # Why it is opened: "first" (connect), "reconnect" or "rotate".
    purpose: str
    opened_at: int | None = None
    last_send: int = 0
    # When silence since a keepalive ping means the connection is dead.
    dead_at: int | None = None
    rotate_at: int | None = None
