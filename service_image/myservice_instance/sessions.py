"""Session binding of one instance: pure rules, no I/O.

An instance serves exactly one session in its life. It starts unbound; the
first Echo/EchoStream/Chat call binds it to that call's `session-id`.
"""
from __future__ import annotations

from myservice import errors


class SessionBinding:
    """The one session this instance belongs to (None until the first call)."""

    def __init__(self) -> None:
        self.server_session_id: str | None = None
        self.ended = False  # Shutdown was accepted: the instance is on its way out

    def bind(self, client_session_id: str) -> str:
        """Bind on first use; afterwards only the same session may call, and only
        until its Shutdown was accepted (then: the session has ended, as the
        gateway says once the instance is gone)."""
        if self.server_session_id is None:
            self.server_session_id = client_session_id
        elif client_session_id != self.server_session_id:
            raise errors.session_conflict(self.server_session_id, client_session_id)
        if self.ended:
            raise errors.session_ended(self.server_session_id)
        return self.server_session_id

    def check_shutdown(self, client_session_id: str) -> str:
        """Shutdown is allowed only to the bound session."""
        if not self.server_session_id:
            raise errors.server_session_not_set()
        if client_session_id != self.server_session_id:
            raise errors.client_session_mismatch(client_session_id, self.server_session_id)
        if self.ended:
            raise errors.session_ended(self.server_session_id)
        self.ended = True
        return self.server_session_id
