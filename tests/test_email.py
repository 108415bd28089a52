"""shared.email.Mailer against moto's SES server over HTTP."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from shared.aws import ses_client
from shared.config import Settings
from shared.email import (
    InvalidAddress,
    Mailer,
    MailThrottled,
    SenderNotVerified,
    normalize_address,
    validate_address,
)
from shared.errors import PermanentJobError, TransientJobError
from tests.test_s3 import canned_http_server, no_retry_client


def sent_messages(endpoint: str) -> list[dict[str, Any]]:
    """Every message moto's SES has accepted so far, from its state API."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as r:
        messages: list[dict[str, Any]] = json.load(r)["ses"]["Message"]
    return messages


@pytest.mark.anyio
async def test_send_delivers_html_and_text(settings: Settings, moto_endpoint: str) -> None:
    # GIVEN a mailer with the verified sender
    mailer = Mailer(ses_client(settings), settings.ses_sender)
    # WHEN a UTF-8 message is sent
    message_id = await mailer.send("Bob@Example.org", "Grüße ✓", "<p>Hallo, Bob ✓</p>",
                                   "Hallo, Bob ✓")
    # THEN SES accepted exactly that message under the returned id
    sent = {m["id"]: m for m in sent_messages(moto_endpoint)}
    assert message_id in sent
    assert sent[message_id]["subject"] == "Grüße ✓"
    assert sent[message_id]["source"] == settings.ses_sender
    assert sent[message_id]["destinations"]["ToAddresses"] == ["Bob@Example.org"]
    assert "Hallo, Bob ✓" in sent[message_id]["body"]


@pytest.mark.anyio
async def test_unverified_sender_is_permanent_and_says_what_to_do(settings: Settings) -> None:
    mailer = Mailer(ses_client(settings), "stranger@unverified.example.net")
    with pytest.raises(SenderNotVerified) as caught:
        await mailer.send("bob@example.org", "Hi", "<p>hi</p>", "hi")
    message = str(caught.value)
    assert "stranger@unverified.example.net" in message
    assert "Verify" in message
    assert isinstance(caught.value, PermanentJobError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "recipient",
    ["", "not-an-address", "a@b", "bob@example.com\r\nBcc: all@example.com",
     "two@@example.com", "spa ce@example.com", "dots..@example.com", "x" * 250 + "@e.com"],
)
async def test_garbage_recipient_is_refused_before_ses(settings: Settings,
                                                       recipient: str) -> None:
    mailer = Mailer(ses_client(settings), settings.ses_sender)
    with pytest.raises(InvalidAddress, match="not a valid e-mail address"):
        await mailer.send(recipient, "Hi", "<p>hi</p>", "hi")


@pytest.mark.anyio
async def test_multiline_subject_is_refused(settings: Settings) -> None:
    mailer = Mailer(ses_client(settings), settings.ses_sender)
    with pytest.raises(PermanentJobError, match="one non-empty line"):
        await mailer.send("bob@example.org", "Hi\r\nBcc: x@example.com", "<p>hi</p>", "hi")


def test_bad_sender_is_refused_at_construction(settings: Settings) -> None:
    with pytest.raises(InvalidAddress):
        Mailer(ses_client(settings), "no-reply")


@pytest.mark.anyio
async def test_throttling_is_transient() -> None:
    throttled = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                 b"<Message>Maximum sending rate exceeded.</Message></Error>"
                 b"<RequestId>r1</RequestId></ErrorResponse>")
    with canned_http_server(400, throttled) as endpoint:
        mailer = Mailer(no_retry_client("ses", endpoint), "no-reply@offload.example.com")
        with pytest.raises(MailThrottled, match="Maximum sending rate") as caught:
            await mailer.send("bob@example.org", "Hi", "<p>hi</p>", "hi")
    assert isinstance(caught.value, TransientJobError)


@pytest.mark.anyio
@pytest.mark.parametrize("configuration_set", ["offload-prod-mail", ""])
async def test_the_configuration_set_is_named_on_every_send_when_set(
    settings: Settings, configuration_set: str
) -> None:
    # GIVEN a mailer whose SES client only answers the exact call expected (moto's SES
    # ignores ConfigurationSetName, so its server cannot show it)
    from botocore.stub import Stubber

    client = ses_client(settings)
    expected: dict[str, Any] = {
        "Source": settings.ses_sender,
        "Destination": {"ToAddresses": ["bob@example.org"]},
        "Message": {"Subject": {"Data": "Hi", "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": "hi", "Charset": "UTF-8"},
                             "Html": {"Data": "<p>hi</p>", "Charset": "UTF-8"}}},
    }
    if configuration_set:
        expected["ConfigurationSetName"] = configuration_set
    mailer = Mailer(client, settings.ses_sender, configuration_set)
    with Stubber(client) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"}, expected)
        # WHEN it sends
        message_id = await mailer.send("bob@example.org", "Hi", "<p>hi</p>", "hi")
        # THEN the call named the set (and nothing when none is configured)
        stub.assert_no_pending_responses()
    assert message_id == "m-1"


def test_address_helpers() -> None:
    assert validate_address("  Ann.Lee+tag@Mail.Example.co.uk ") == "Ann.Lee+tag@Mail.Example.co.uk"
    assert normalize_address("Ann@Example.COM") == "ann@example.com"
