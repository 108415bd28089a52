"""What a command handler gets: the store, the cursors, and typed access to its arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mongomock.filtering import filter_applies
from pymongo.errors import InvalidName

from infra.local.mongo_standin.errors import CommandError, ErrorCode

if TYPE_CHECKING:
    import mongomock
    from pymongo.collection import Collection
    from pymongo.database import Database

    from infra.local.mongo_standin.cursors import CursorRegistry

Document = dict[str, Any]
Reply = dict[str, Any]

_INVALID_DB_CHARS = frozenset('/\\. "$\x00')


@dataclass
class Invocation:
    """One command being run: its name, arguments, target database and the shared state."""

    client: mongomock.MongoClient[Document]
    cursors: CursorRegistry
    database_name: str
    name: str
    body: Document
    connection_id: int

    @property
    def database(self) -> Database[Document]:
        if not self.database_name or _INVALID_DB_CHARS.intersection(self.database_name):
            raise CommandError(
                ErrorCode.INVALID_NAMESPACE, f"Invalid database name: '{self.database_name}'"
            )
        return self.client[self.database_name]

    @property
    def collection_name(self) -> str:
        """The command's target collection: the value of its first field."""
        name = self.body[self.name]
        if not isinstance(name, str) or not name:
            raise CommandError(
                ErrorCode.INVALID_NAMESPACE,
                f"collection name has invalid type {type(name).__name__}",
            )
        return name

    @property
    def namespace(self) -> str:
        return f"{self.database_name}.{self.collection_name}"

    def collection(self) -> Collection[Document]:
        try:
            return self.database[self.collection_name]
        except InvalidName as exc:
            raise CommandError(ErrorCode.INVALID_NAMESPACE, str(exc)) from exc

    def collection_exists(self) -> bool:
        return self.collection_name in self.database.list_collection_names()

    def ensure_collection(self) -> Collection[Document]:
        """The collection, created first if needed: a write creates its collection implicitly,
        and it must outlive its last document as a real server's does."""
        if not self.collection_exists():
            self.collection()  # validates the name before creating anything
            self.database.create_collection(self.collection_name)
        return self.collection()

    def document(self, field: str, default: Document | None = None) -> Document:
        value = self.body.get(field, default)
        if value is None:
            return {}
        return self._typed(field, value, Mapping, "object")  # type: ignore[no-any-return]

    def documents(self, field: str) -> list[Document]:
        value = self._typed(field, self.body.get(field), list, "array")
        for item in value:
            if not isinstance(item, Mapping):
                raise self._wrong_type(f"{field}.<element>", "object", item)
        return value  # type: ignore[no-any-return]

    def integer(self, field: str, default: int) -> int:
        value = self.body.get(field, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong_type(field, "number", value)
        return int(value)

    def flag(self, field: str, default: bool = False) -> bool:
        value = self.body.get(field, default)
        if isinstance(value, bool | int | float):
            return bool(value)
        raise self._wrong_type(field, "bool", value)

    def _typed(self, field: str, value: Any, kind: type, label: str) -> Any:
        if not isinstance(value, kind):
            raise self._wrong_type(field, label, value)
        return value

    def _wrong_type(self, field: str, expected: str, value: Any) -> CommandError:
        return CommandError(
            ErrorCode.TYPE_MISMATCH,
            f"BSON field '{self.name}.{field}' is the wrong type '{type(value).__name__}', "
            f"expected type '{expected}'",
        )


Handler = Callable[[Invocation], Reply]


def filter_matches(filter_spec: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """Whether ``document`` matches a query filter, by mongomock's own query engine."""
    # mongomock's functions carry no annotations.
    return not filter_spec or bool(filter_applies(filter_spec, document))  # type: ignore[no-untyped-call]
