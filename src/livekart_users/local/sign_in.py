"""Sign-in as Cognito does it, where cognito-local does not: SRP, and disabled users refused.

The stack's Cognito endpoint (`cognito_proxy`) asks `SignIn.answer` first for each request;
`None` means "pass it to cognito-local unchanged". What is answered here:

- `InitiateAuth` / `AdminInitiateAuth` with `USER_SRP_AUTH` (Amplify's and
  amazon-cognito-identity-js's default sign-in; cognito-local answers it with HTTP 500
  "unsupported feature"): the `PASSWORD_VERIFIER` challenge, computed from the user's password
  in cognito-local's pool file (the stack owns that file; cognito-local keeps passwords in it);
- `RespondToAuthChallenge` / `AdminRespondToAuthChallenge` to `PASSWORD_VERIFIER`: a proof
  that does not verify fails as Cognito fails it (`NotAuthorizedException`, "Incorrect
  username or password."); a good one signs the user in through cognito-local with
  `USER_PASSWORD_AUTH`, whose answer is returned as it is: tokens after the Post
  Authentication trigger, as for any sign-in, or the `NEW_PASSWORD_REQUIRED` challenge of an
  admin-created user, which the client then answers to cognito-local (it supports that one);
- a disabled user is refused with Cognito's `NotAuthorizedException` "User is disabled." on
  every sign-in flow (cognito-local lets a disabled user sign in), once the password (or
  refresh token) is shown to be right, so the answer does not tell a stranger the state;
- a wrong password on the password flows fails as on Cognito (`NotAuthorizedException`,
  "Incorrect username or password."; cognito-local says `InvalidPasswordException`, and
  lets an admin-created user on to NEW_PASSWORD_REQUIRED with any password).

Requests hold the proxy's write lock while they are answered here (InitiateAuth and
RespondToAuthChallenge count as writes), so the pool file is read between writes, whole.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekart_users.local import srp

# (status, headers, body): an HTTP answer.
Answer = tuple[int, dict[str, str], bytes]
Forward = Callable[[str, dict[str, Any]], Answer]

# How long a PASSWORD_VERIFIER challenge can be answered (Cognito's auth session: 3 minutes).
CHALLENGE_SECONDS = 180.0
SRP_FLOW = "USER_SRP_AUTH"
PASSWORD_FLOWS = ("USER_PASSWORD_AUTH", "ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH")
REFRESH_FLOWS = ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN")
WRONG = "Incorrect username or password."


def error(kind: str, message: str, status: int = 400) -> Answer:
    """An error as Cognito sends it (the SDKs read `x-amzn-ErrorType` or `__type`)."""
    body = json.dumps({"__type": kind, "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": kind}, body


def success(payload: Mapping[str, Any]) -> Answer:
    return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(payload).encode()


@dataclass(frozen=True)
class _Pending:
    challenge: srp.Challenge
    client_id: str
    started: float


class SignIn:
    """The sign-in answers cognito-local lacks, from its data files in `db`."""

    def __init__(self, db: Path, forward: Forward) -> None:
        self.db = db
        self.forward = forward  # (operation, JSON body) -> cognito-local's answer
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def answer(self, name: str | None, body: bytes) -> Answer | None:
        """This endpoint's answer to `name`, or None to let cognito-local answer."""
        if name not in (
            "InitiateAuth",
            "AdminInitiateAuth",
            "RespondToAuthChallenge",
            "AdminRespondToAuthChallenge",
        ):
            return None
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return None  # cognito-local says what is wrong with it
        if not isinstance(request, dict):
            return None
        if name.endswith("InitiateAuth"):
            return self._initiate(request)
        return self._respond(request)

    # --- InitiateAuth ----------------------------------------------------------------------

    def _initiate(self, request: dict[str, Any]) -> Answer | None:
        flow = request.get("AuthFlow")
        parameters = request.get("AuthParameters") or {}
        client = self._client(str(request.get("ClientId") or ""))
        if client is None or not isinstance(parameters, dict):
            return None
        pool = self._pool(str(client.get("UserPoolId") or ""))
        if pool is None:
            return None
        if flow == SRP_FLOW:
            return self._start_srp(request, client, pool, parameters)
        if flow in PASSWORD_FLOWS:
            user = find_user(pool, str(parameters.get("USERNAME") or ""))
            if user is None:
                return None  # cognito-local's answer (a user migration trigger may know them)
            if user.get("Password") != parameters.get("PASSWORD"):
                # cognito-local answers InvalidPasswordException ("Invalid password"), or,
                # for an admin-created user, NEW_PASSWORD_REQUIRED whatever the password.
                return error("NotAuthorizedException", WRONG)
            return refuse_disabled(user)
        if flow in REFRESH_FLOWS:
            token = parameters.get("REFRESH_TOKEN")
            for user in (pool.get("Users") or {}).values():
                if token and token in (user.get("RefreshTokens") or []):
                    return refuse_disabled(user)
        return None

    def _start_srp(
        self,
        request: dict[str, Any],
        client: dict[str, Any],
        pool: dict[str, Any],
        parameters: dict[str, Any],
    ) -> Answer:
        flows = client.get("ExplicitAuthFlows") or []
        # A client created without ExplicitAuthFlows allows SRP on AWS (the documented default).
        if flows and not {"ALLOW_USER_SRP_AUTH", "USER_SRP_AUTH"} & set(flows):
            return error(
                "InvalidParameterException", "USER_SRP_AUTH is not enabled for the client."
            )
        if not parameters.get("SRP_A"):
            return error("InvalidParameterException", "Missing required parameter SRP_A")
        wrong_secret = check_secret_hash(client, request, parameters)
        if wrong_secret:
            return wrong_secret
        user = find_user(pool, str(parameters.get("USERNAME") or ""))
        if user is None:
            return error("UserNotFoundException", "User does not exist.")
        pool_id = str((pool.get("Options") or {}).get("Id") or client["UserPoolId"])
        try:
            challenge = srp.start(
                pool_id,
                str(user["Username"]),
                str(user.get("Password") or ""),
                str(parameters["SRP_A"]),
            )
        except srp.BadSrpA:
            return error("InvalidParameterException", "Invalid SRP_A value.")
        now = time.monotonic()
        with self._lock:
            for block, pending in list(self._pending.items()):
                if now - pending.started > CHALLENGE_SECONDS:
                    del self._pending[block]
            self._pending[challenge.secret_block] = _Pending(
                challenge, str(request["ClientId"]), now
            )
        return success(
            {"ChallengeName": "PASSWORD_VERIFIER", "ChallengeParameters": challenge.parameters}
        )

    # --- RespondToAuthChallenge ------------------------------------------------------------

    def _respond(self, request: dict[str, Any]) -> Answer | None:
        if request.get("ChallengeName") != "PASSWORD_VERIFIER":
            return None  # NEW_PASSWORD_REQUIRED and the MFA challenges: cognito-local's
        responses = request.get("ChallengeResponses") or {}
        if not isinstance(responses, dict):
            return error("InvalidParameterException", "ChallengeResponses must be a map.")
        with self._lock:
            # One answer per challenge, as on Cognito: a wrong proof needs a new InitiateAuth.
            pending = self._pending.pop(str(responses.get("PASSWORD_CLAIM_SECRET_BLOCK")), None)
        if (
            pending is None
            or time.monotonic() - pending.started > CHALLENGE_SECONDS
            or pending.client_id != request.get("ClientId")
        ):
            return error("NotAuthorizedException", WRONG)
        challenge = pending.challenge
        wrong_secret = check_secret_hash(self._client(pending.client_id) or {}, request, responses)
        if wrong_secret:
            return wrong_secret
        signature = str(responses.get("PASSWORD_CLAIM_SIGNATURE") or "")
        if not srp.verify(challenge, signature, str(responses.get("TIMESTAMP") or "")):
            return error("NotAuthorizedException", WRONG)
        pool = self._pool(challenge.user_pool_id)
        user = find_user(pool or {}, challenge.user_id)
        if user is None:  # deleted since the challenge
            return error("NotAuthorizedException", WRONG)
        refused = refuse_disabled(user)
        if refused:
            return refused
        sign_in: dict[str, Any] = {
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": pending.client_id,
            "AuthParameters": {"USERNAME": user["Username"], "PASSWORD": user.get("Password")},
        }
        if request.get("ClientMetadata"):
            sign_in["ClientMetadata"] = request["ClientMetadata"]
        return self.forward("InitiateAuth", sign_in)

    # --- cognito-local's files -------------------------------------------------------------

    def _client(self, client_id: str) -> dict[str, Any] | None:
        clients = _read(self.db / "clients.json") or {}
        found = (clients.get("Clients") or {}).get(client_id)
        return found if isinstance(found, dict) else None

    def _pool(self, pool_id: str) -> dict[str, Any] | None:
        if not pool_id or "/" in pool_id or "\\" in pool_id or pool_id.startswith("."):
            return None
        return _read(self.db / f"{pool_id}.json")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _attribute(user: Mapping[str, Any], name: str) -> str | None:
    for attribute in user.get("Attributes") or []:
        if attribute.get("Name") == name:
            return str(attribute.get("Value"))
    return None


def find_user(pool: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The user `name` signs in as: by user name, sub, or an alias the pool signs in with
    (as cognito-local's own lookup does, so both ends agree on who signs in)."""
    users = pool.get("Users") or {}
    if not name:
        return None
    if name in users:
        return dict(users[name])
    aliases = set((pool.get("Options") or {}).get("UsernameAttributes") or [])
    for user in users.values():
        if _attribute(user, "sub") == name:
            return dict(user)
        for alias in aliases & {"email", "phone_number"}:
            if _attribute(user, alias) == name:
                return dict(user)
    return None


def check_secret_hash(
    client: Mapping[str, Any], request: Mapping[str, Any], parameters: Mapping[str, Any]
) -> Answer | None:
    """Cognito's refusal when a client with a secret gets no (or a wrong) SECRET_HASH:
    Base64(HMAC-SHA256(client secret, USERNAME + client id)) in each SRP step."""
    secret = client.get("ClientSecret")
    if not secret:
        return None
    client_id = str(request.get("ClientId") or "")
    given = parameters.get("SECRET_HASH")
    if not given:
        return error(
            "NotAuthorizedException",
            f"Client {client_id} is configured with secret but SECRET_HASH was not received",
        )
    message = (str(parameters.get("USERNAME") or "") + client_id).encode()
    expected = base64.b64encode(hmac.digest(str(secret).encode(), message, "sha256")).decode()
    if not hmac.compare_digest(expected.encode(), str(given).encode()):
        return error(
            "NotAuthorizedException", f"Unable to verify secret hash for client {client_id}"
        )
    return None


def refuse_disabled(user: Mapping[str, Any]) -> Answer | None:
    if user.get("Enabled") is False:
        return error("NotAuthorizedException", "User is disabled.")
    return None
