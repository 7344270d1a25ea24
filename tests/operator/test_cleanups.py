"""The uninstall cleanup (`myservice-operator cleanup`): what it asks the API, in order."""
from myservice_operator import cleanups


class Kube:
    namespace = "ns"

    def __init__(self, sessions, pods, lingering=()):
        self.sessions, self.pods, self.lingering = list(sessions), list(pods), list(lingering)
        self.requests = []

    def list_sessions(self):
        self.requests.append(("list", "sessions"))
        return [{"metadata": {"name": n}} for n in self.sessions]

    def delete_session(self, name):
        self.requests.append(("delete", name))
        self.sessions.remove(name)
        self.sessions += [n for n in self.lingering if n == name]  # held by someone's finalizer

    def list_instance_pods(self):
        self.requests.append(("list", "pods"))
        return [{"metadata": {"name": n}} for n in self.pods]

    def delete_pod(self, name):
        self.requests.append(("delete", name))


def test_cleanup_deletes_sessions_then_the_pods_left_over():
    kube = Kube(["a", "b"], ["a-pod", "pool-x"])
    assert cleanups.run(kube, grace_seconds=60, sleep=lambda _: None) == 2
    assert kube.requests == [("list", "sessions"), ("delete", "a"), ("delete", "b"), ("list", "sessions"),
                             ("list", "pods"), ("delete", "a-pod"), ("delete", "pool-x")]


def test_cleanup_waits_at_most_the_grace_period_for_sessions_to_go():
    kube = Kube(["a"], [], lingering=["a"])
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    assert cleanups.run(kube, grace_seconds=5, poll_seconds=2, clock=lambda: now[0], sleep=sleep) == 1
    assert now[0] == 6  # polled at 0, 2, 4 and 6 s: then the pods regardless
    assert kube.requests[-1] == ("list", "pods")
