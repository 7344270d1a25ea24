"""The parts of the wire contract that are not in the .proto: metadata keys,
method names and the exact error texts of the seed scenario
(shared/seed/basic_workflow.md). Every component takes these from here."""

SERVICE = "myservice.v1.MyService"

# Metadata keys every call after Login carries.
AUTHORIZATION = "authorization"
SESSION_ID = "session-id"

SERVER_VALUE = "my_service"

LOGIN_METHOD = f"/{SERVICE}/Login"

# Error texts, to the letter of the seed.
USERNAME_REQUIRED = "username is required"
SESSION_ID_REQUIRED = "session_id is required"
INVALID_CREDENTIALS = "invalid username or password"
FAILED_TO_GET_USER = "failed to get user"
FAILED_TO_CREATE_TOKEN = "failed to create token"
SERVER_SESSION_NOT_SET = "Server session is not set"
NO_AVAILABLE_INSTANCES = "no available instances"
ALL_INSTANCES_BUSY = "all instances are busy"
BACKEND_UNAVAILABLE = "backend service unavailable"


def session_conflict(was: str, now: str) -> str:
    return f"Session conflict: was={was}, now={now}"


def client_session_mismatch(client: str, server: str) -> str:
    return f"Client session mismatch: client={client}, server={server}"


def session_ended(session_id: str) -> str:
    """Beyond the seed: a call on a session whose instance has already exited."""
    return f"session {session_id} has ended; log in with a new session_id"
