"""Property tests over arbitrary attribute maps, personal data included, on DynamoDB Local.

Whatever Cognito (or an emulator) sends, the handler returns the event, every row it writes is
valid, and no email, name or phone it was given appears in anything it logs or emits — on the
success path (table present) and the error path (table missing) alike.
"""

from __future__ import annotations

import os
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livekart_users import schema, triggers
from livekart_users.table import UsersTable

from .conftest import TriggerOutput

# Personal data carries a marker no id, timestamp or log key can contain by chance, and is at
# least 8 characters long. Its alphabet needs no JSON escaping, so a leak cannot hide in one.
MARKER = "Pii7q"
SAFE = string.ascii_letters + string.digits + " .-_+'"
pii = st.text(SAFE, min_size=3, max_size=40).map(lambda s: f"{MARKER}{s}")
emails = st.builds(lambda local, domain: f"{local}@{domain}.example", pii, pii)
phones = st.text(string.digits, min_size=7, max_size=14).map(lambda d: f"+{MARKER}{d}")
anything = st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans())

attributes = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.one_of(st.uuids().map(str), st.text(max_size=20)),
        "email": emails,
        "name": pii,
        "given_name": pii,
        "family_name": pii,
        "phone_number": phones,
        "email_verified": st.sampled_from(["true", "false", "", "TRUE", "yes"]),
        "custom:role": st.one_of(
            st.sampled_from(["customer", "vendor", "admin", "Vendor"]), st.text(max_size=12)
        ),
        "cognito:user_status": st.sampled_from(["CONFIRMED", "EXTERNAL_PROVIDER"]),
        "zoneinfo": anything,
    },
)
sources = st.sampled_from(
    [
        triggers.CONFIRM_SIGN_UP,
        triggers.CONFIRM_FORGOT_PASSWORD,
        triggers.AUTHENTICATION,
        "PreSignUp_SignUp",
    ]
)


def personal_values(attrs: dict[str, Any]) -> list[str]:
    values = [
        attrs[k]
        for k in ("email", "name", "given_name", "family_name", "phone_number")
        if k in attrs
    ]
    return values + [v.lower() for v in values]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attrs=attributes,
    source=sources,
    user_name=st.one_of(st.none(), pii),
    table_present=st.booleans(),
)
def test_handler_never_raises_writes_only_valid_rows_and_logs_no_personal_data(
    users_table: UsersTable,
    trigger_output: TriggerOutput,
    attrs: dict[str, Any],
    source: str,
    user_name: str | None,
    table_present: bool,
) -> None:
    event: dict[str, Any] = {
        "version": "1",
        "region": "us-east-1",
        "userPoolId": "us-east-1_pMr6t5GFA",
        "triggerSource": source,
        "request": {"userAttributes": attrs},
        "response": {},
    }
    if user_name is not None:
        event["userName"] = user_name
    os.environ["USERS_TABLE"] = users_table.name if table_present else "missing-table"
    try:
        assert triggers.handler(event, None) is event
    finally:
        os.environ["USERS_TABLE"] = users_table.name
    output = trigger_output.text()
    assert output, "the handler logs every invocation"
    for value in [*personal_values(attrs), *([user_name] if user_name else [])]:
        assert value not in output
    for item in users_table.scan():
        schema.validate(item)
