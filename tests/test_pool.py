"""The exact requests deploy sends to a user pool, from the raw JSON a real Cognito answers.

botocore's Stubber refuses fields its model does not know, and its answers never go through
the parser, so a loopback HTTP server plays Cognito here: it serves canned JSON (including
settings newer than the pinned botocore) and records every request as sent on the wire.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from livekart_users import aws
from livekart_users.deploy import models, pool

REGION = "us-east-1"
ACCOUNT = "123456789012"
POOL_ID = "us-east-1_AbC123"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{models.DEFAULT_FUNCTION}"
FRAUD_CHECK = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fraud-check"

FULL_POOL: dict[str, Any] = {
    "Id": POOL_ID,
    "Name": "livekart-prod",
    "Arn": "arn:aws:cognito-idp:x",
    "Status": "Enabled",
    "CreationDate": 1735689600,
    "LastModifiedDate": 1735776000,
    "EstimatedNumberOfUsers": 42,
    "SchemaAttributes": [{"Name": "custom:role", "AttributeDataType": "String", "Mutable": False}],
    "UsernameAttributes": ["email"],
    "UsernameConfiguration": {"CaseSensitive": False},
    "Domain": "livekart",
    "SmsConfigurationFailure": "none",
    "EmailConfigurationFailure": "none",
    "Policies": {
        "PasswordPolicy": {
            "MinimumLength": 12,
            "RequireSymbols": True,
            "TemporaryPasswordValidityDays": 3,
        }
    },
    "DeletionProtection": "ACTIVE",
    "LambdaConfig": {"PreSignUp": FRAUD_CHECK},
    "AutoVerifiedAttributes": ["email"],
    "VerificationMessageTemplate": {
        "DefaultEmailOption": "CONFIRM_WITH_CODE",
        "EmailSubject": "Your code",
        "EmailMessage": "Code {####}",
    },
    "EmailVerificationSubject": "Your code",
    "EmailVerificationMessage": "Code {####}",
    "SmsAuthenticationMessage": "Your code {####}",
    "UserAttributeUpdateSettings": {"AttributesRequireVerificationBeforeUpdate": ["email"]},
    "MfaConfiguration": "OPTIONAL",
    "DeviceConfiguration": {"ChallengeRequiredOnNewDevice": True},
    "EmailConfiguration": {
        "EmailSendingAccount": "DEVELOPER",
        "SourceArn": "arn:aws:ses:us-east-1:123456789012:identity/x",
    },
    "SmsConfiguration": {"SnsCallerArn": "arn:aws:iam::123456789012:role/sms"},
    "UserPoolTags": {"team": "marketplace"},
    "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": False, "UnusedAccountValidityDays": 7},
    "UserPoolAddOns": {"AdvancedSecurityMode": "AUDIT"},
    "AccountRecoverySetting": {"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
    "UserPoolTier": "ESSENTIALS",
}

MFA: dict[str, Any] = {
    "MfaConfiguration": "OPTIONAL",
    "SoftwareTokenMfaConfiguration": {"Enabled": True},
    "EmailMfaConfiguration": {"Message": "Code {####}", "Subject": "Sign-in code"},
    "WebAuthnConfiguration": {"RelyingPartyId": "livekart.example", "UserVerification": "required"},
}

Answer = dict[str, Any] | Callable[[dict[str, Any]], tuple[int, Any]]


class FakeCognito:
    """Answers by operation (X-Amz-Target); `mfa` answers GetUserPoolMfaConfig in turn."""

    def __init__(self) -> None:
        self.pool: Any = copy.deepcopy(FULL_POOL)
        self.mfa: list[Any] = [copy.deepcopy(MFA)]
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.requests]

    def sent(self, operation: str) -> list[dict[str, Any]]:
        return [body for op, body in self.requests if op == operation]

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.requests.append((operation, body))
        if operation in self.answers:
            given = self.answers[operation]
            return given(body) if callable(given) else (200, given)
        if operation == "DescribeUserPool":
            return 200, {"UserPool": self.pool}
        if operation == "GetUserPoolMfaConfig":
            return 200, self.mfa.pop(0) if len(self.mfa) > 1 else self.mfa[0]
        return 200, {}


@pytest.fixture
def cognito(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, FakeCognito]]:
    fake = FakeCognito()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            operation = self.headers["X-Amz-Target"].split(".", 1)[1]
            status, answer = fake.answer(operation, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", f"http://127.0.0.1:{server.server_port}"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield aws.client("cognito-idp", region_name=REGION), fake
    finally:
        server.shutdown()
        server.server_close()


def attach(client: Any) -> list[str]:
    return pool.attach(client, POOL_ID, FUNCTION_ARN, models.TRIGGER_SLOTS)


def expected_update(**changes: Any) -> dict[str, Any]:
    """What UpdateUserPool must receive for FULL_POOL: every setting, our triggers added."""
    expected = {k: v for k, v in FULL_POOL.items() if k not in pool.READ_ONLY}
    expected["AdminCreateUserConfig"] = {"AllowAdminCreateUserOnly": False}
    expected.update(
        UserPoolId=POOL_ID,
        PoolName="livekart-prod",
        LambdaConfig={
            "PreSignUp": FRAUD_CHECK,
            "PostConfirmation": FUNCTION_ARN,
            "PostAuthentication": FUNCTION_ARN,
        },
    )
    expected.update(changes)
    return expected


# --- every setting goes back -------------------------------------------------------------------


def test_update_user_pool_request_carries_every_writable_setting(
    cognito: tuple[Any, FakeCognito],
) -> None:
    client, fake = cognito
    expected = expected_update()
    # Every writable field the pool has goes back: nothing is left to be reset.
    assert set(expected) - {"UserPoolId", "PoolName"} == set(FULL_POOL) - pool.READ_ONLY
    assert attach(client) == ["PostConfirmation", "PostAuthentication"]
    assert fake.operations() == [
        "DescribeUserPool",
        "GetUserPoolMfaConfig",
        "UpdateUserPool",
        "GetUserPoolMfaConfig",
    ]
    assert fake.sent("UpdateUserPool") == [expected]


# --- a setting the pinned botocore does not know stops the write ------------------------------


def put(document: dict[str, Any], path: list[str | int], value: Any) -> None:
    for key in path[:-1]:
        document = document.setdefault(key, {}) if isinstance(key, str) else document[key]
    document[path[-1]] = value  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (["LambdaConfig", "KMSKeyID", "Arn"], "LambdaConfig.KMSKeyID (not a string)"),
        (["PasskeyConfiguration"], "PasskeyConfiguration"),
        (["LambdaConfig", "FutureTrigger"], "LambdaConfig.FutureTrigger"),
        (["Policies", "PasswordPolicy", "RequireEmoji"], "Policies.PasswordPolicy.RequireEmoji"),
        (["UserPoolAddOns", "BotProtection"], "UserPoolAddOns.BotProtection"),
        (
            ["AdminCreateUserConfig", "InviteMessageTemplate", "PushMessage"],
            "AdminCreateUserConfig.InviteMessageTemplate.PushMessage",
        ),
        (
            ["AccountRecoverySetting", "RecoveryMechanisms", 0, "Channel"],
            "AccountRecoverySetting.RecoveryMechanisms.Channel",
        ),
    ],
)
def test_an_unknown_setting_at_any_depth_stops_the_write_and_is_named(
    path: list[str | int], named: str, cognito: tuple[Any, FakeCognito]
) -> None:
    client, fake = cognito
    put(fake.pool, path, "something newer")
    with pytest.raises(pool.UnsupportedPoolSetting) as raised:
        attach(client)
    assert f"has settings unknown here: {named}; " in str(raised.value)
    assert "upgrade livekart-users, or attach the triggers by hand" in str(raised.value)
    assert "UpdateUserPool" not in fake.operations()


def test_an_unknown_key_inside_a_setting_that_never_goes_back_does_not_stop_it(
    cognito: tuple[Any, FakeCognito],
) -> None:
    client, fake = cognito
    fake.pool["SchemaAttributes"][0]["Indexed"] = True
    fake.pool["Hostnames"] = ["a.example"]  # unknown, and at the top: stops it
    with pytest.raises(pool.UnsupportedPoolSetting, match=r"unknown here: Hostnames; "):
        attach(client)
    del fake.pool["Hostnames"]
    assert attach(client) == ["PostConfirmation", "PostAuthentication"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>gateway timeout</html>", "it is not JSON"),
        (b'["UserPool"]', "botocore could not parse it: AttributeError"),
        (b'{"Pool": {}}', "it has no UserPool object"),
    ],
)
def test_a_raw_answer_that_cannot_be_read_stops_the_write(
    body: bytes, why: str, cognito: tuple[Any, FakeCognito]
) -> None:
    client, fake = cognito
    fake.answers["DescribeUserPool"] = lambda _: (200, body)
    with pytest.raises(pool.UnreadablePoolAnswer, match=f"could not be read \\({why}\\)"):
        attach(client)
    assert fake.operations() == ["DescribeUserPool"]


def test_the_planner_refuses_it_too_before_any_change(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    fake.pool["LambdaConfig"]["FutureTrigger"] = "arn:aws:lambda:us-east-1:1:function:f"
    settings = pool.describe(client, POOL_ID)
    assert settings.unknown == ["LambdaConfig.FutureTrigger"]
    with pytest.raises(pool.UnsupportedPoolSetting, match=r"LambdaConfig\.FutureTrigger"):
        pool.update_request(client, settings, {"PostConfirmation": FUNCTION_ARN})


# --- MFA settings, outside DescribeUserPool -----------------------------------------------------


def test_mfa_settings_the_update_changed_are_put_back(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    reset = {"MfaConfiguration": "OPTIONAL", "SoftwareTokenMfaConfiguration": {"Enabled": True}}
    fake.mfa = [copy.deepcopy(MFA), reset, copy.deepcopy(MFA)]
    attach(client)
    assert fake.operations() == [
        "DescribeUserPool",
        "GetUserPoolMfaConfig",
        "UpdateUserPool",
        "GetUserPoolMfaConfig",
        "SetUserPoolMfaConfig",
        "GetUserPoolMfaConfig",
    ]
    assert fake.sent("SetUserPoolMfaConfig") == [{"UserPoolId": POOL_ID, **MFA}]


def test_mfa_settings_that_cannot_be_put_back_stop_with_one_line(
    cognito: tuple[Any, FakeCognito],
) -> None:
    client, fake = cognito
    fake.mfa = [copy.deepcopy(MFA), {"MfaConfiguration": "OPTIONAL"}]
    fake.answers["SetUserPoolMfaConfig"] = lambda _: (
        400,
        {"__type": "AccessDeniedException", "message": "not allowed"},
    )
    with pytest.raises(pool.MfaSettingsChanged) as raised:
        attach(client)
    message = str(raised.value)
    assert (
        "changed MfaConfig.EmailMfaConfiguration, MfaConfig.SoftwareTokenMfaConfiguration, "
        "MfaConfig.WebAuthnConfiguration, and putting them back failed (AccessDenied"
    ) in message
    assert "\n" not in message


def test_an_unknown_mfa_setting_stops_the_write(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    fake.mfa = [{**MFA, "PushMfaConfiguration": {"Enabled": True}}]
    with pytest.raises(pool.UnsupportedPoolSetting, match=r"MfaConfig.PushMfaConfiguration; "):
        attach(client)
    assert "UpdateUserPool" not in fake.operations()


# --- settings that depend on the feature plan go back in the form UpdateUserPool takes ------


def test_dynamic_client_registration_is_never_sent_back(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    fake.pool["DcrConfiguration"] = {"OpenDcrEnabled": False, "AllowedScopes": ["openid"]}
    attach(client)
    [sent] = fake.sent("UpdateUserPool")
    assert "DcrConfiguration" not in sent  # omitted, Cognito keeps it
    assert sent == expected_update()


ACR = {f"Level{n}": {"AcrValue": f"urn:livekart:acr:{n}"} for n in range(1, 5)}


@pytest.mark.parametrize(
    ("tier", "sent_back"), [("LITE", False), ("ESSENTIALS", True), ("PLUS", True)]
)
def test_acr_names_go_back_only_on_a_plan_that_has_them(
    tier: str, sent_back: bool, cognito: tuple[Any, FakeCognito]
) -> None:
    client, fake = cognito
    fake.pool.update(UserPoolTier=tier, AcrConfiguration=ACR)
    attach(client)
    [sent] = fake.sent("UpdateUserPool")
    assert sent["UserPoolTier"] == tier  # omitted, it would become ESSENTIALS
    assert sent.get("AcrConfiguration") == (ACR if sent_back else None)


def test_sms_through_end_user_messaging_goes_back_without_the_sns_form(
    cognito: tuple[Any, FakeCognito],
) -> None:
    client, fake = cognito
    eums = {"CallerArn": "arn:aws:iam::123456789012:role/sms", "OriginationIdentity": "+15550100"}
    fake.pool["SmsConfiguration"] = {
        "SnsCallerArn": "arn:aws:iam::123456789012:role/sms",
        "ExternalId": "x",
        "SnsRegion": "us-east-1",
        "EumsSms": eums,
    }
    attach(client)
    [sent] = fake.sent("UpdateUserPool")
    assert sent["SmsConfiguration"] == {"EumsSms": eums}


def test_sms_through_sns_goes_back_whole(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    sns = {"SnsCallerArn": "arn:aws:iam::1:role/sms", "ExternalId": "x", "SnsRegion": "us-east-1"}
    fake.pool["SmsConfiguration"] = sns
    attach(client)
    assert fake.sent("UpdateUserPool")[0]["SmsConfiguration"] == sns


def test_detach_keeps_every_other_setting_and_the_mfa(cognito: tuple[Any, FakeCognito]) -> None:
    client, fake = cognito
    fake.pool["LambdaConfig"].update(PostConfirmation=FUNCTION_ARN, PostAuthentication=FUNCTION_ARN)
    assert pool.detach(client, POOL_ID, FUNCTION_ARN, models.TRIGGER_SLOTS) == [
        "PostConfirmation",
        "PostAuthentication",
    ]
    [sent] = fake.sent("UpdateUserPool")
    assert sent == expected_update(LambdaConfig={"PreSignUp": FRAUD_CHECK})
    assert fake.operations().count("GetUserPoolMfaConfig") == 2
