"""The parts of the wire contract that are not in the .proto: metadata keys,
method names and the exact error texts of the user's seed scenario (its error
table, README's "Errors"). Every component takes these from here; errors.py
pairs each text with its status code."""
import urllib.parse

SERVICE = "myservice.v1.MyService"

# Metadata keys every call after Login carries.
AUTHORIZATION = "authorization"
SESSION_ID = "session-id"
# Set by the gateway on every call it forwards to an instance: the token's user
# (user_metadata_value). A client-sent value is dropped, never passed through.
USER = "myservice-user"

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
# The seed's table has no text for these (UNAUTHENTICATED, "-"): ours.
MISSING_TOKEN = "missing authorization token"
MISSING_SESSION_ID = "missing session-id"
INVALID_TOKEN = "invalid token"


# Visible ASCII but '%': a username made only of these travels as it is.
_USER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def user_metadata_value(username: str) -> str:
    """`username` as the value of USER: percent-encoded UTF-8 (RFC 3986), since a
    metadata value must be visible ASCII; a name of visible ASCII without '%' is
    unchanged. urllib.parse.unquote reverses it."""
    return urllib.parse.quote(username, safe=_USER_SAFE)


def session_conflict(was: str, now: str) -> str:
    return f"Session conflict: was={was}, now={now}"


def client_session_mismatch(client: str, server: str) -> str:
    return f"Client session mismatch: client={client}, server={server}"


def session_ended(session_id: str) -> str:
    """Beyond the seed: a call on a session whose instance has already exited."""
    return f"session {session_id} has ended; log in with a new session_id"


def per_user_limit(limit: int) -> str:
    """Beyond the seed: the user already has `limit` live sessions (MYSERVICE_MAX_SESSIONS_PER_USER)."""
    return f"per-user limit reached: at most {limit} live sessions per user"


def not_ready_within(seconds: float) -> str:
    """Beyond the seed: a first call's wait for its session's instance ran out."""
    return f"the session's instance was not ready within {round(seconds, 1):g}s"


REPEATED_METADATA = "more than one authorization or session-id value"
NEGATIVE_COUNT = "count must be >= 0"

SESSION_OF_ANOTHER_USER = "session belongs to another user"
"""Beyond the seed: a session's resource names another user than the token's (defence in depth)."""

# Beyond the seed: the forwarding path (issue 18, item 9).
METHOD_NOT_FOUND = "Method not found!"
"""gRPC's own text for an unknown method, kept where the gateway answers it itself: a
client sees the same answer whether the gateway or an instance says it."""
MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""The largest message the gateway forwards to a client: gRPC's default receive limit,
which every client has unless it raises it."""
ANSWER_TOO_LARGE = "answer larger than 4 MiB, the most the gateway forwards in one message"


# Beyond the seed: Login's own checks and answers (issue 7).
SESSION_ID_MAX_LENGTH = 128
# A session_id travels back in the `session-id` metadata of every later call, so it
# must be a valid metadata value that no proxy rewrites: visible ASCII only.
SESSION_ID_RULE = ("session_id must be 1 to 128 printable ASCII characters "
                   "(0x21-0x7E: no spaces, no control characters)")
MALFORMED_REQUEST = "malformed request"
# Login refused before any password hashing, each with a google.rpc.RetryInfo detail.
LOGIN_THROTTLED = "too many login attempts, retry later"
LOGIN_BUSY = "too many logins in progress, retry later"


def session_id_problem(session_id: str) -> str | None:
    """None if `session_id` can be used as a session's id, else the message for the client
    (the seed's "session_id is required" for the empty one, else the rule)."""
    if not session_id:
        return SESSION_ID_REQUIRED
    if len(session_id) > SESSION_ID_MAX_LENGTH or not _visible_ascii(session_id):
        return SESSION_ID_RULE
    return None


def _visible_ascii(text: str) -> bool:
    # isascii + isprintable leaves exactly 0x20-0x7E; the space is the one left to refuse.
    return text.isascii() and text.isprintable() and " " not in text
