"""Who may hold what while a request is in progress: the admission rules of /v1/grade.

A request is admitted per client address (`max_per_client`, else 429), its body counts against
`max_bodies_mb` from its first byte to its answer (else 503), and it takes one of `max_queue`
grading slots only once its body is in, so clients that send slowly (or not at all) hold no
grading slot: the read deadlines (uploads.py, server.py) close them instead. When the last request
is answered the service is idle and the memory freed meanwhile is handed back (memory.py).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator

from sightx.serve.config import ServeConfig
from sightx.serve.errors import Refused

_RETRY = {"Retry-After": "1"}


class Ticket:
    """One request's share: the body bytes it holds and whether it holds a grading slot."""

    def __init__(self, gates: Gates) -> None:
        self._gates = gates
        self.bytes = 0
        self.grading = False

    def hold(self, n: int) -> None:
        """Count n more body bytes, or refuse the request (503) when the bodies in memory would pass the budget."""
        g = self._gates
        if g.body_bytes + n > g.config.max_bodies_bytes:
            raise Refused(503, f"busy: {g.body_bytes / 2**20:.0f} MB of uploads in memory, retry shortly", _RETRY)
        g.body_bytes += n
        self.bytes += n

    def grade(self) -> None:
        """Take a grading slot (the body is in), or 503."""
        self._gates.check_queue()
        self._gates.grading += 1
        self.grading = True


class Gates:
    def __init__(self, config: ServeConfig, on_idle: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.on_idle = on_idle
        self.clients: Counter[str] = Counter()  # requests in progress per client address
        self.body_bytes = 0
        self.grading = 0

    @property
    def in_progress(self) -> int:
        return sum(self.clients.values())

    def check_queue(self) -> None:
        if self.grading >= self.config.max_queue:
            raise Refused(503, f"busy: {self.grading} requests being graded, retry shortly", _RETRY)

    @contextlib.contextmanager
    def request(self, client: str) -> Iterator[Ticket]:
        if self.clients[client] >= self.config.max_per_client:
            raise Refused(429, f"too many requests at once from {client} (at most {self.config.max_per_client}), retry shortly", _RETRY)
        self.check_queue()  # no use reading a body that could not be graded
        self.clients[client] += 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            self.clients[client] -= 1
            if not self.clients[client]:
                del self.clients[client]
            self.body_bytes -= ticket.bytes
            self.grading -= ticket.grading
            if not self.clients:
                self.on_idle()
