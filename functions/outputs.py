"""What ``GET /jobs/{id}`` adds to a job's view: presigned downloads of the files its result
declares (:class:`shared.blob_ref.BlobRef`), and its last reported progress.

A download is offered only for an object in the results bucket under the caller's own
prefix (``{kind}/{owner}/...``), whatever the result says, and is signed at read time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from functions import container
from shared.api_models import DownloadPublic, ProgressPublic
from shared.blob_ref import BlobRef, find_blob_refs
from shared.queue import JobQueue, JobView
from shared.queue.progress import Progress
from shared.s3 import presigned_get

# How long a download URL works: long enough to start a large download, short enough
# that a leaked URL soon stops working.
DOWNLOAD_URL_SECONDS = 900


def owned_files(view: JobView, owner: str) -> list[BlobRef]:
    """The files of ``view``'s result that ``owner`` may download."""
    if view.status != "done":
        return []
    bucket = container.settings().results_bucket
    return [ref for ref in find_blob_refs(view.result)
            if ref.bucket == bucket and ref.key.split("/")[1:2] == [owner]]


def sign(ref: BlobRef) -> DownloadPublic:
    """A presigned GET of ``ref``, saved as its name."""
    signed_at = datetime.now(UTC).replace(microsecond=0)
    url = presigned_get(container.current().s3, ref.bucket, ref.key, DOWNLOAD_URL_SECONDS,
                        filename=ref.name)
    return DownloadPublic(name=ref.name, url=url,
                          expires_at=signed_at + timedelta(seconds=DOWNLOAD_URL_SECONDS),
                          content_type=ref.content_type, bytes=ref.size)


def downloads(view: JobView, owner: str) -> list[DownloadPublic]:
    return [sign(ref) for ref in owned_files(view, owner)]


def progress_public(progress: Progress | None) -> ProgressPublic | None:
    if progress is None:
        return None
    return ProgressPublic(fraction=progress.fraction, message=progress.message,
                          updated_at=progress.updated_at)


async def follow(queue: JobQueue, job_id: str, owner: str, timeout: float,  # noqa: ASYNC109
                 wait_for: str) -> tuple[JobView, Progress | None]:
    """The job (long-polled until it finishes, or until its progress changes when
    ``wait_for`` is ``progress``) and its last progress."""
    if wait_for == "progress":
        view = await queue.wait_for_progress(job_id, owner, timeout)
    else:
        view = await queue.wait(job_id, owner, timeout)
    return view, await queue.progress(job_id)
