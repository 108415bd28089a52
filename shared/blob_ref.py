"""``BlobRef``: how a job's result names an S3 object it wrote, so the API can offer it
for download. A typed record (``"$type": "offload.blob"``), not a guess from key strings:
the API presigns exactly the objects a result declares (:func:`find_blob_refs`).

Light on purpose (no boto3, no beanie): ``functions/`` reads it on every job read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BLOB_TYPE = "offload.blob"
# How deep into a result the API looks for references, and how many it offers.
MAX_DEPTH = 4
MAX_REFS = 20


@dataclass(frozen=True)
class BlobRef:
    """An S3 object a job wrote: its download name (unique within the job's result), where
    it is, its content type and size."""

    name: str
    bucket: str
    key: str
    content_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"$type": BLOB_TYPE, "name": self.name, "bucket": self.bucket, "key": self.key,
                "content_type": self.content_type, "bytes": self.size}

    @classmethod
    def parse(cls, value: Any) -> BlobRef | None:
        """The reference ``value`` is, or None when it is not a well-formed one."""
        if not isinstance(value, dict) or value.get("$type") != BLOB_TYPE:
            return None
        name, bucket, key = value.get("name"), value.get("bucket"), value.get("key")
        content_type, size = value.get("content_type"), value.get("bytes")
        texts = (name, bucket, key, content_type)
        if not all(isinstance(t, str) and t for t in texts) or not isinstance(size, int):
            return None
        return cls(str(name), str(bucket), str(key), str(content_type), size)


def find_blob_refs(result: Any) -> list[BlobRef]:
    """The blob references in a job's result (itself, or nested in its dicts and lists),
    in order, the first of each name."""
    found: dict[str, BlobRef] = {}

    def walk(value: Any, depth: int) -> None:
        if len(found) >= MAX_REFS or depth > MAX_DEPTH:
            return
        ref = BlobRef.parse(value)
        if ref is not None:
            found.setdefault(ref.name, ref)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)

    walk(result, 0)
    return list(found.values())
