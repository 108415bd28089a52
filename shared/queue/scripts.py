"""Our own Lua scripts, run by hash on any coredis client.

``EVALSHA`` first; on ``NOSCRIPT`` (a restarted or failed-over server, ``SCRIPT FLUSH``)
the script is loaded and run once more. coredis' ``Script.__call__`` does the same through
a generic retry wrapper that costs more client CPU than the command itself, and the
fair-share slot runs before every job (figures in bench/README.md, "Fairness").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from coredis.exceptions import NoScriptError


@dataclass(frozen=True)
class LuaScript:
    """A Lua script's text and its SHA-1, callable with a client, keys and arguments."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)

    async def __call__(self, redis: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, keys=keys, args=args)
        except NoScriptError:
            await redis.script_load(self.text)
            return await redis.evalsha(self.sha, keys=keys, args=args)

