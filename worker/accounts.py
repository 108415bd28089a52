"""The caller's own User: found by the job owner's identity, created on first use.

Lambdas never open MongoDB, so the API only passes the token's ``sub`` (the job's owner)
and its e-mail/name claims; the first job that needs the caller's User creates it here.
A job never names another user: every lookup is by the running job's owner.
"""

from __future__ import annotations

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from shared.errors import PermanentJobError
from shared.models import User
from worker.retry_policy import SYSTEM_OWNER, JobContext, current_job

# Said whenever the caller's own user cannot be had; it names no id, so no error tells a
# caller whether some other user exists.
NO_ACCOUNT = ("no account for this caller: the token carries no usable 'email' claim to "
              "create one from")


async def caller_user(job: JobContext | None = None) -> User:
    """The running job's owner's User, created from the token's claims when missing."""
    job = job or current_job()
    if job.owner == SYSTEM_OWNER:
        raise PermanentJobError("this job acts for a caller, and it was enqueued by none")
    found = await User.find_one(User.subject == job.owner)
    if found is not None:
        return found
    return await _create(job)


async def _create(job: JobContext) -> User:
    if not job.email:
        raise PermanentJobError(NO_ACCOUNT)
    try:
        user = User(subject=job.owner, email=job.email,
                    display_name=job.name or job.email.split("@", 1)[0])
    except ValidationError as exc:
        raise PermanentJobError(NO_ACCOUNT) from exc
    try:
        return await user.insert()
    except DuplicateKeyError:
        # A concurrent first job created it, or the e-mail belongs to another account: only
        # the former is ours (an address is never taken over through a token's claim).
        found = await User.find_one(User.subject == job.owner)
        if found is None:
            raise PermanentJobError(
                "no account can be created for this caller from the token's claims") from None
        return found
