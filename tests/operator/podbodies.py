"""Instance pod bodies as the API (and kopf's watch) delivers them, for the operator's tests."""
import datetime

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
T = "2026-01-02T03:04:05Z"
POD = "mss-a-0123456789-pod"


def pod(phase="Pending", conditions=(), containers=(), ip="", reason="", message="", deleting=False):
    status = {"phase": phase, "conditions": list(conditions), "containerStatuses": list(containers)}
    if ip:
        status["podIP"] = ip
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    metadata = {"name": POD}
    if deleting:
        metadata["deletionTimestamp"] = T
    return {"metadata": metadata, "status": status}


def waiting(reason, message=""):
    return {"name": "instance", "state": {"waiting": {"reason": reason, "message": message}}}


def terminated(code, reason=""):
    return {"name": "instance", "state": {"terminated": {"exitCode": code, "reason": reason}}}


READY = {"type": "Ready", "status": "True"}
UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient cpu."}



def ended_pod(message, code=0, phase="Succeeded", reason="", status_message="", deadline=None):
    """A finished instance pod as the API returns it (kubelet's fields included)."""
    container = {"name": "instance", "ready": False, "restartCount": 0, "image": "myservice-service:dev",
                 "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                          "startedAt": "2026-01-02T03:00:00Z", "finishedAt": T,
                                          "containerID": "containerd://abc"}}}
    if message is not None:
        container["state"]["terminated"]["message"] = message
    status = {"phase": phase, "podIP": "10.0.0.7", "startTime": "2026-01-02T02:59:59Z",
              "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
              "containerStatuses": [container]}
    if reason:
        status["reason"] = reason
    if status_message:
        status["message"] = status_message
    spec = {"restartPolicy": "Never"}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"metadata": {"name": POD, "uid": "pod-uid"}, "spec": spec, "status": status}

