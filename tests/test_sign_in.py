"""The stack's own sign-in answers (local/sign_in.py, local/srp.py) on cognito-local's files.

Real clients (Amplify v6, amazon-cognito-identity-js) run against the whole stack in
test_js_clients.py; here each rule is pinned on its own, with a client computed in the test
as amazon-cognito-identity-js's AuthenticationHelper computes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from livekart_users.local import srp, stack
from livekart_users.local.sign_in import SignIn

POOL_ID = "us-east-1_AbCdEfGhI"  # a real-length id: the pool name in the proof is "AbCdEfGhI"
CLIENT = "4v5h2sv7lsye6g23qaqo1otl9"
PASSWORD = "LiveKart-demo-1"


def user(name: str, email: str, *, enabled: bool = True, password: str = PASSWORD) -> Any:
    return {
        "Username": name,
        "Password": password,
        "Enabled": enabled,
        "UserStatus": "CONFIRMED",
        "Attributes": [{"Name": "sub", "Value": name}, {"Name": "email", "Value": email}],
        "RefreshTokens": [f"refresh-{name}"],
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    clients = {
        "Clients": {
            CLIENT: {"UserPoolId": POOL_ID, "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH"]},
            "with-secret": {
                "UserPoolId": POOL_ID,
                "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH"],
                "ClientSecret": "s3cret",
            },
            "password-only": {
                "UserPoolId": POOL_ID,
                "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH"],
            },
        }
    }
    pool = {
        "Options": {"Id": POOL_ID, "UsernameAttributes": ["email"]},
        "Users": {
            "u-1": user("u-1", "ann@example.com"),
            "u-2": user("u-2", "bob@example.com", enabled=False),
        },
    }
    (tmp_path / "clients.json").write_text(json.dumps(clients))
    (tmp_path / f"{POOL_ID}.json").write_text(json.dumps(pool))
    return tmp_path


class Upstream:
    """Stands in for cognito-local: records what the stack sends it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        self.calls.append((name, request))
        return 200, {}, b'{"AuthenticationResult": {"AccessToken": "t"}}'


def call(sign_in: SignIn, name: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = sign_in.answer(name, json.dumps(request).encode())
    assert answer is not None
    return answer[0], json.loads(answer[2])


# --- a client, as amazon-cognito-identity-js computes it ------------------------------------


def client_proof(parameters: dict[str, str], password: str, a: int, when: str) -> str:
    big_a = pow(srp.G, a, srp.N)
    big_b = int(parameters["SRP_B"], 16)
    u = int(srp.hex_hash(srp.pad_hex(big_a) + srp.pad_hex(big_b)), 16)
    x = srp.private_value(parameters["SALT"], "AbCdEfGhI", parameters["USER_ID_FOR_SRP"], password)
    s = pow(big_b - srp.K * pow(srp.G, x, srp.N), a + u * x, srp.N)
    prk = hmac.digest(bytes.fromhex(srp.pad_hex(u)), bytes.fromhex(srp.pad_hex(s)), "sha256")
    key = hmac.digest(prk, b"Caldera Derived Key\x01", "sha256")[:16]
    message = (
        b"AbCdEfGhI"
        + parameters["USER_ID_FOR_SRP"].encode()
        + base64.b64decode(parameters["SECRET_BLOCK"])
        + when.encode()
    )
    return base64.b64encode(hmac.digest(key, message, "sha256")).decode()


def srp_sign_in(
    sign_in: SignIn, username: str, password: str, when: str | None = None
) -> tuple[int, dict[str, Any]]:
    a = secrets.randbelow(srp.N - 2) + 2
    status, challenge = call(
        sign_in,
        "InitiateAuth",
        {
            "AuthFlow": "USER_SRP_AUTH",
            "ClientId": CLIENT,
            "AuthParameters": {"USERNAME": username, "SRP_A": format(pow(srp.G, a, srp.N), "x")},
        },
    )
    assert (status, challenge["ChallengeName"]) == (200, "PASSWORD_VERIFIER"), challenge
    parameters = challenge["ChallengeParameters"]
    when = when or srp.timestamp(datetime.now(UTC))
    return call(
        sign_in,
        "RespondToAuthChallenge",
        {
            "ChallengeName": "PASSWORD_VERIFIER",
            "ClientId": CLIENT,
            "ChallengeResponses": {
                "USERNAME": parameters["USERNAME"],
                "PASSWORD_CLAIM_SECRET_BLOCK": parameters["SECRET_BLOCK"],
                "TIMESTAMP": when,
                "PASSWORD_CLAIM_SIGNATURE": client_proof(parameters, password, a, when),
            },
        },
    )


# --- tests -----------------------------------------------------------------------------------


def test_the_group_and_k_are_cognitos() -> None:
    assert srp.N.bit_length() == 3072 and srp.G == 2
    assert srp.pad_hex(0x80) == "0080" and srp.pad_hex(0x7F) == "7f" and srp.pad_hex(0xF) == "0f"
    assert int(hashlib.sha256(bytes.fromhex(srp.pad_hex(srp.N) + "02")).hexdigest(), 16) == srp.K


def test_timestamps_are_written_and_checked_as_cognito_does() -> None:
    assert srp.timestamp(datetime(2023, 9, 5, 9, 5, 7, tzinfo=UTC)) == "Tue Sep 5 09:05:07 UTC 2023"
    assert srp.is_canonical_timestamp("Tue Sep 5 09:05:07 UTC 2023")
    assert not srp.is_canonical_timestamp("Tue Sep 05 09:05:07 UTC 2023")  # zero-padded day
    assert not srp.is_canonical_timestamp("Wed Sep 5 09:05:07 UTC 2023")  # wrong weekday


def test_a_right_password_signs_in_through_cognito_local_with_the_users_name(db: Path) -> None:
    upstream = Upstream()
    sign_in = SignIn(db, upstream)
    # By email (the pool signs in with it): USER_ID_FOR_SRP is the user name, as on Cognito.
    assert srp_sign_in(sign_in, "ann@example.com", PASSWORD) == (
        200,
        {"AuthenticationResult": {"AccessToken": "t"}},
    )
    assert upstream.calls == [
        (
            "InitiateAuth",
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": CLIENT,
                "AuthParameters": {"USERNAME": "u-1", "PASSWORD": PASSWORD},
            },
        )
    ]


@pytest.mark.parametrize(
    ("password", "when"),
    [("Wrong-password-1", None), (PASSWORD, "Tue Sep 05 09:05:07 UTC 2023")],
)
def test_a_wrong_proof_fails_as_cognito_fails_it(db: Path, password: str, when: str) -> None:
    upstream = Upstream()
    status, answer = srp_sign_in(SignIn(db, upstream), "u-1", password, when)
    assert (status, answer) == (
        400,
        {"__type": "NotAuthorizedException", "message": "Incorrect username or password."},
    )
    assert upstream.calls == []


def test_a_challenge_is_answered_once(db: Path) -> None:
    upstream = Upstream()
    sign_in = SignIn(db, upstream)
    a = secrets.randbelow(srp.N - 2) + 2
    _, challenge = call(
        sign_in,
        "InitiateAuth",
        {
            "AuthFlow": "USER_SRP_AUTH",
            "ClientId": CLIENT,
            "AuthParameters": {"USERNAME": "u-1", "SRP_A": format(pow(srp.G, a, srp.N), "x")},
        },
    )
    parameters = challenge["ChallengeParameters"]
    when = srp.timestamp(datetime.now(UTC))
    respond = {
        "ChallengeName": "PASSWORD_VERIFIER",
        "ClientId": CLIENT,
        "ChallengeResponses": {
            "USERNAME": "u-1",
            "PASSWORD_CLAIM_SECRET_BLOCK": parameters["SECRET_BLOCK"],
            "TIMESTAMP": when,
            "PASSWORD_CLAIM_SIGNATURE": client_proof(parameters, PASSWORD, a, when),
        },
    }
    assert call(sign_in, "RespondToAuthChallenge", respond)[0] == 200
    assert call(sign_in, "RespondToAuthChallenge", respond)[1]["__type"] == (
        "NotAuthorizedException"
    )
    assert len(upstream.calls) == 1


def test_a_disabled_user_is_refused_once_the_password_is_right(db: Path) -> None:
    sign_in = SignIn(db, Upstream())
    disabled = {"__type": "NotAuthorizedException", "message": "User is disabled."}
    assert srp_sign_in(sign_in, "bob@example.com", PASSWORD) == (400, disabled)

    def password_flow(password: str) -> Any:
        return sign_in.answer(
            "InitiateAuth",
            json.dumps(
                {
                    "AuthFlow": "USER_PASSWORD_AUTH",
                    "ClientId": CLIENT,
                    "AuthParameters": {"USERNAME": "bob@example.com", "PASSWORD": password},
                }
            ).encode(),
        )

    assert json.loads(password_flow(PASSWORD)[2]) == disabled
    # A wrong password says nothing of the state, in Cognito's words (not cognito-local's).
    assert json.loads(password_flow("Wrong-password-1")[2]) == {
        "__type": "NotAuthorizedException",
        "message": "Incorrect username or password.",
    }
    refresh = {"REFRESH_TOKEN": "refresh-u-2"}
    answer = sign_in.answer(
        "InitiateAuth",
        json.dumps(
            {"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT, "AuthParameters": refresh}
        ).encode(),
    )
    assert answer is not None and json.loads(answer[2]) == disabled
    # An enabled user's password sign-in is cognito-local's to answer.
    assert (
        sign_in.answer(
            "InitiateAuth",
            json.dumps(
                {
                    "AuthFlow": "USER_PASSWORD_AUTH",
                    "ClientId": CLIENT,
                    "AuthParameters": {"USERNAME": "u-1", "PASSWORD": PASSWORD},
                }
            ).encode(),
        )
        is None
    )


def test_srp_is_refused_where_cognito_refuses_it(db: Path) -> None:
    sign_in = SignIn(db, Upstream())
    a_hex = format(pow(srp.G, 12345, srp.N), "x")

    def start(client: str, username: str, srp_a: str = a_hex) -> tuple[int, dict[str, Any]]:
        return call(
            sign_in,
            "InitiateAuth",
            {
                "AuthFlow": "USER_SRP_AUTH",
                "ClientId": client,
                "AuthParameters": {"USERNAME": username, "SRP_A": srp_a},
            },
        )

    assert start("password-only", "u-1") == (
        400,
        {
            "__type": "InvalidParameterException",
            "message": "USER_SRP_AUTH is not enabled for the client.",
        },
    )
    assert start(CLIENT, "nobody@example.com")[1]["__type"] == "UserNotFoundException"
    for bad in (format(srp.N, "x"), "0", "-1f", "not hex"):
        assert start(CLIENT, "u-1", srp_a=bad)[1]["__type"] == "InvalidParameterException"
    # Hostile types: an answer, not a crash.
    odd = {
        "AuthFlow": "USER_SRP_AUTH",
        "ClientId": CLIENT,
        "AuthParameters": {"USERNAME": "u-1", "SRP_A": 12345},
    }
    assert call(sign_in, "InitiateAuth", odd)[0] == 200
    # Other challenges (NEW_PASSWORD_REQUIRED, MFA) and unknown clients: cognito-local's.
    other = {"ChallengeName": "NEW_PASSWORD_REQUIRED", "ClientId": CLIENT}
    assert sign_in.answer("RespondToAuthChallenge", json.dumps(other).encode()) is None
    unknown = {"AuthFlow": "USER_SRP_AUTH", "ClientId": "nope", "AuthParameters": {}}
    assert sign_in.answer("InitiateAuth", json.dumps(unknown).encode()) is None
    assert sign_in.answer("SignUp", b"{}") is None


def test_a_stack_made_before_srp_gets_a_real_apps_flows_on_its_client() -> None:
    # The stack's client allows what Amplify's default sign-in needs; an existing stack's
    # client (made with password + refresh only) is brought up to it at the next `up`.
    cognito = boto3.client(
        "cognito-idp", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(cognito) as stub:
        ids = {"UserPoolId": POOL_ID, "ClientId": CLIENT}
        old = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
        stub.add_response(
            "describe_user_pool_client", {"UserPoolClient": {**ids, "ExplicitAuthFlows": old}}, ids
        )
        stub.add_response(
            "update_user_pool_client",
            {},
            {
                **ids,
                "ClientName": stack.CLIENT_NAME,
                "ExplicitAuthFlows": sorted(stack.APP_AUTH_FLOWS),
                "WriteAttributes": stack.SELF_SERVICE_ATTRIBUTES,
                "ReadAttributes": [*stack.SELF_SERVICE_ATTRIBUTES, "email_verified"],
            },
        )
        stack._allow_app_flows(cognito, POOL_ID, CLIENT)
        # Already allowed: nothing is changed.
        flows = {"UserPoolClient": {**ids, "ExplicitAuthFlows": stack.APP_AUTH_FLOWS}}
        stub.add_response("describe_user_pool_client", flows, ids)
        stack._allow_app_flows(cognito, POOL_ID, CLIENT)
        stub.assert_no_pending_responses()
    assert "ALLOW_USER_SRP_AUTH" in stack.APP_AUTH_FLOWS


def test_a_client_with_a_secret_needs_the_secret_hash_in_each_step(db: Path) -> None:
    upstream = Upstream()
    sign_in = SignIn(db, upstream)
    client = "with-secret"

    def secret_hash(username: str) -> str:
        digest = hmac.digest(b"s3cret", (username + client).encode(), "sha256")
        return base64.b64encode(digest).decode()

    def start(**extra: str) -> tuple[int, dict[str, Any]]:
        a_hex = format(pow(srp.G, 12345, srp.N), "x")
        parameters = {"USERNAME": "u-1", "SRP_A": a_hex, **extra}
        request = {"AuthFlow": "USER_SRP_AUTH", "ClientId": client, "AuthParameters": parameters}
        return call(sign_in, "InitiateAuth", request)

    assert start() == (
        400,
        {
            "__type": "NotAuthorizedException",
            "message": (
                "Client with-secret is configured with secret but SECRET_HASH was not received"
            ),
        },
    )
    assert start(SECRET_HASH=secret_hash("u-2"))[1] == {
        "__type": "NotAuthorizedException",
        "message": "Unable to verify secret hash for client with-secret",
    }
    status, challenge = start(SECRET_HASH=secret_hash("u-1"))
    assert (status, challenge["ChallengeName"]) == (200, "PASSWORD_VERIFIER")
    respond = {
        "ChallengeName": "PASSWORD_VERIFIER",
        "ClientId": client,
        "ChallengeResponses": {
            "USERNAME": "u-1",
            "PASSWORD_CLAIM_SECRET_BLOCK": challenge["ChallengeParameters"]["SECRET_BLOCK"],
            "TIMESTAMP": srp.timestamp(datetime.now(UTC)),
            "PASSWORD_CLAIM_SIGNATURE": "AAAA",
        },
    }
    assert call(sign_in, "RespondToAuthChallenge", respond)[1]["message"].startswith(
        "Client with-secret is configured with secret"
    )
    assert upstream.calls == []
