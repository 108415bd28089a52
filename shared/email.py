"""E-mail through SES, with SES's refusals mapped onto the worker's retry policy.

- ``MessageRejected`` naming our sender: the sender identity is not verified in this region.
  Retrying cannot help, so it is :class:`SenderNotVerified` (permanent), whose message says
  what to verify.
- Any other ``MessageRejected`` and the account/domain refusals: :class:`MailRejected`
  (permanent).
- ``Throttling`` (sending rate or daily quota): :class:`MailThrottled` (transient).
- Everything else (5xx, connection errors) stays a botocore error; the worker's policy
  retries every non-permanent exception, and the client itself already retried it
  (``shared.aws`` configures botocore's "standard" retry mode).

Only the standard library is imported at module level: the address helpers are used by
``shared.models`` and the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from shared.errors import PermanentJobError, TransientJobError

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

# Deliberately modest: one "@", no spaces or control characters, a dotted domain of
# letters, digits and hyphens. Anything stranger is refused rather than handed to SES.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_MAX_ADDRESS = 254
_PERMANENT_CODES = frozenset(
    {"MessageRejected", "MailFromDomainNotVerifiedException", "AccountSendingPausedException",
     "ConfigurationSetDoesNotExistException", "InvalidParameterValue"}
)


class InvalidAddress(PermanentJobError, ValueError):
    """The string is not an e-mail address we are willing to send to."""


class SenderNotVerified(PermanentJobError):
    """SES refuses the sender: its identity is not verified in this account and region."""


class MailRejected(PermanentJobError):
    """SES refused the message for a reason other than the sender (e.g. a sandbox recipient)."""


class MailThrottled(TransientJobError):
    """SES's sending rate or daily quota is exhausted for now."""


def validate_address(value: str) -> str:
    """``value`` stripped, if it has the shape of an e-mail address; else InvalidAddress."""
    address = value.strip() if isinstance(value, str) else ""
    if len(address) > _MAX_ADDRESS or not _ADDRESS.match(address) or ".." in address:
        raise InvalidAddress(f"not a valid e-mail address: {value!r:.80}")
    return address


def normalize_address(value: str) -> str:
    """The canonical (lower-cased) form used as a user's identity; InvalidAddress if bad."""
    return validate_address(value).lower()


class Mailer:
    """Sends one HTML + text message per call from a fixed, verified sender, with the SES
    configuration set (bounce/complaint events, suppression) when one is named."""

    def __init__(self, ses: SESClient, sender: str, configuration_set: str = "") -> None:
        self._ses = ses
        self.sender = validate_address(sender)
        self.configuration_set = configuration_set

    async def send(self, to: str, subject: str, html: str, text: str) -> str:
        """Send and return SES's MessageId; runs the SES call off the event loop."""
        import anyio

        recipient = validate_address(to)
        if not subject.strip() or "\n" in subject or "\r" in subject:
            raise PermanentJobError("the subject must be one non-empty line")
        message: Any = {
            "Subject": {"Data": subject, "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": text, "Charset": "UTF-8"},
                "Html": {"Data": html, "Charset": "UTF-8"},
            },
        }

        extra: Any = {"ConfigurationSetName": self.configuration_set} \
            if self.configuration_set else {}

        def call() -> str:
            try:
                response = self._ses.send_email(
                    Source=self.sender,
                    Destination={"ToAddresses": [recipient]},
                    Message=message,
                    **extra,
                )
            except Exception as exc:
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
            return response["MessageId"]

        return await anyio.to_thread.run_sync(call)

    def _translate(self, exc: Exception) -> Exception:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return exc
        error = exc.response.get("Error", {})
        code, reason = error.get("Code", ""), error.get("Message", "")
        if code == "Throttling":
            return MailThrottled(f"SES throttled the send: {reason}")
        if code == "MessageRejected" and self.sender.lower() in reason.lower():
            return SenderNotVerified(
                f"SES rejected the sender {self.sender!r} ({reason}). Verify this address or "
                f"its domain in SES for this region (or set OFFLOAD_SES_SENDER to a verified "
                f"identity)."
            )
        if code in _PERMANENT_CODES:
            return MailRejected(f"SES refused the message ({code}): {reason}")
        return exc
