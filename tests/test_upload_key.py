"""``shared.api_models.UploadKey``: the one parser of ``uploads/{owner}/{upload_id}/{filename}``
for the S3 handler (which ignores other keys) and the image job (which fails on them)."""

from __future__ import annotations

import pytest

from shared.api_models import InvalidUploadKey, UploadKey
from shared.errors import PermanentJobError

NOT_UPLOADS = [
    "",
    "photo.jpg",
    "images/u1/abc123/photo.jpg",          # another prefix
    "uploads/u1/abc123",                   # no filename
    "uploads/u1/abc123/",                  # empty filename
    "uploads//abc123/photo.jpg",           # empty owner
    "uploads/u1//photo.jpg",               # empty upload id
    "uploads/u1/abc123/dir/photo.jpg",     # POST /uploads never signs a "/" in a filename
    "uploads/-u1/abc123/photo.jpg",        # not an owner id
    "uploads/u1/ab/photo.jpg",             # upload id too short
    "uploads/u1/abc-123/photo.jpg",        # upload id not alphanumeric
]


def test_a_key_round_trips() -> None:
    # GIVEN the key POST /uploads signs for an owner's upload
    key = UploadKey(owner="user@example.com", upload_id="a" * 32, filename="holiday photo.jpg")
    # WHEN its string is parsed, leniently and strictly
    # THEN the same parts come back
    assert UploadKey.parse(str(key)) == key
    assert UploadKey.require(str(key)) == key
    assert str(key) == f"uploads/user@example.com/{'a' * 32}/holiday photo.jpg"


@pytest.mark.parametrize("key", NOT_UPLOADS)
def test_other_keys_parse_to_none(key: str) -> None:
    # GIVEN a key POST /uploads did not make
    # WHEN the S3 handler parses it
    # THEN it gets None (and ignores the object)
    assert UploadKey.parse(key) is None


@pytest.mark.parametrize("key", NOT_UPLOADS)
def test_require_refuses_other_keys_permanently(key: str) -> None:
    # GIVEN a key POST /uploads did not make
    # WHEN the image job requires an upload key
    with pytest.raises(InvalidUploadKey) as refused:
        UploadKey.require(key)
    # THEN it fails with a permanent error (no retry) that names the key and the shape
    assert isinstance(refused.value, PermanentJobError)
    assert isinstance(refused.value, ValueError)
    assert repr(key)[:20] in str(refused.value)
    assert "uploads/{owner}/{upload_id}/{filename}" in str(refused.value)


def test_a_long_key_is_cut_in_the_message() -> None:
    # GIVEN a hostile, very long key
    key = "x" * 10_000
    # WHEN it is refused
    with pytest.raises(InvalidUploadKey) as refused:
        UploadKey.require(key)
    # THEN the reason stays short
    assert len(str(refused.value)) < 400


def test_variants_go_under_the_owner_and_upload() -> None:
    # GIVEN an upload
    upload = UploadKey.require("uploads/u1/abc123/photo.jpg")
    # WHEN the key of its thumbnail is asked for
    # THEN it names the owner and upload, outside uploads/ (no second S3 event)
    assert upload.variant_key("thumbnail") == "images/u1/abc123/thumbnail.webp"
    assert UploadKey.parse(upload.variant_key("thumbnail")) is None
