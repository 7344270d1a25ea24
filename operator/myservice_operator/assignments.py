"""Warm pool pods given to sessions and not yet labelled as theirs (pure, no I/O).

A warm claim is two writes: the session's status first (Ready on the pool pod:
the assignment, all the session waits for), then the pod's labels and owner in
the background (pool.claim_patch). Between the two the pod is still a pool
member as far as its labels go; this remembers, for the one active operator,
which session each such pod is for, so that it is never picked twice, its
session's step reads its state from it, and it is deleted if the session goes
before it is labelled. The sessions' index (indexes.assigned_to) says the same
for every write the watch has delivered, and is what a new leader starts from
after a failover; this covers the writes the watch has not delivered yet.

An entry lives from the decision (before the status write) until the pod's
event shows it labelled, or deleted; or until the status write is known not to
have landed (409/404).
"""
from __future__ import annotations


class Assignments:
    def __init__(self) -> None:
        self._session_of: dict[str, str] = {}  # pod -> session
        self._pod_of: dict[str, str] = {}      # session -> pod
        self._labelled: set[str] = set()       # label patch answered, its event not seen yet
        self._stale: dict[str, str] = {}       # pod -> the resourceVersion its label patch met a newer one at

    def __len__(self) -> int:
        return len(self._session_of)

    def assign(self, pod: str, session: str) -> None:
        """`pod` is `session`'s (a session has one: a new pod replaces its old entry)."""
        old = self._pod_of.get(session)
        if old is not None and old != pod:
            self.drop(old)
        self._session_of[pod] = session
        self._pod_of[session] = pod

    def session_of(self, pod: str) -> str | None:
        return self._session_of.get(pod)

    def pod_of(self, session: str) -> str | None:
        return self._pod_of.get(session)

    def labelled(self, pod: str) -> None:
        """The label patch landed: not to be sent again while the watch catches up."""
        if pod in self._session_of:
            self._labelled.add(pod)

    def stale(self, pod: str, version: str) -> None:
        """The label patch at `version` met a newer pod (409): not to be sent at it again;
        the pod's event brings the newer version."""
        if pod in self._session_of:
            self._stale[pod] = version

    def needs_label(self, pod: str, version: str | None = None) -> bool:
        """Whether the pod still needs its label patch (at `version`, when given)."""
        return (pod in self._session_of and pod not in self._labelled
                and (version is None or self._stale.get(pod) != version))

    def drop(self, pod: str) -> str | None:
        """Forget the pod's entry (labelled and indexed, deleted, or never written); its session."""
        session = self._session_of.pop(pod, None)
        self._labelled.discard(pod)
        self._stale.pop(pod, None)
        if session is not None and self._pod_of.get(session) == pod:
            del self._pod_of[session]
        return session
