"""Find the Redis the stack uses: ``REDIS_URL`` when it answers, else a private redis-server.

Streaq needs Redis (or Valkey) 7.0 or newer (it loads Redis Functions), so both paths check
the version and refuse an older one with a message naming what was found.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from infra.local.supervisor import ChildSpec

MIN_VERSION = (7, 0)
INSTALL_HINT = (
    "install Redis >= 7 (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: "
    "`brew install redis`) or set REDIS_URL to a Redis >= 7 you can reach"
)


class RedisProblem(RuntimeError):
    """Redis cannot be used; the message says what to do."""


@dataclass(frozen=True)
class ExternalRedis:
    url: str
    version: str


def parse_version(text: str) -> tuple[int, ...]:
    """``7.0.15`` (or ``v=7.0.15`` from ``redis-server --version``) as a tuple."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise RedisProblem(f"cannot read a Redis version from {text.strip()!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


def check_version(version: str, where: str) -> None:
    if parse_version(version)[:2] < MIN_VERSION:
        raise RedisProblem(
            f"{where} is Redis {version}; Offload's queue (Streaq) needs Redis >= 7.0: "
            + INSTALL_HINT
        )


def probe_url(url: str, timeout: float = 1.0) -> str | None:
    """The server version at ``url``, or None when nothing answers there."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise RedisProblem(f"REDIS_URL must start with redis:// or rediss://, got {url!r}")
    if parts.scheme == "rediss":
        return "7.0.0 (TLS, not probed)"  # trust it; Streaq reports a real mismatch itself
    commands = b""
    if parts.password:
        user = (parts.username or "default").encode()
        commands += _resp(b"AUTH", user, parts.password.encode())
    commands += _resp(b"INFO", b"server")
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                      timeout=timeout) as conn:
            conn.sendall(commands)
            reply = _read_until(conn, b"redis_version:", timeout)
    except OSError:
        return None
    match = re.search(rb"redis_version:([0-9.]+)", reply)
    if match is None:
        raise RedisProblem(f"the server at {url} did not answer INFO like Redis: "
                           f"{reply[:120]!r}")
    return match.group(1).decode()


def _resp(*parts: bytes) -> bytes:
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        out += b"$%d\r\n%s\r\n" % (len(part), part)
    return out


def _read_until(conn: socket.socket, needle: bytes, timeout: float) -> bytes:
    conn.settimeout(timeout)
    data = b""
    while needle not in data or not data.endswith(b"\r\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if data.startswith(b"-"):
            break  # an error reply (NOAUTH, WRONGPASS)
    return data


def external_redis(env_url: str | None) -> ExternalRedis | None:
    """``REDIS_URL`` when set and reachable (version checked); None otherwise."""
    if not env_url:
        return None
    version = probe_url(env_url)
    if version is None:
        return None
    check_version(version, f"REDIS_URL ({env_url})")
    return ExternalRedis(env_url, version)


def redis_server_binary() -> str:
    """The redis-server on PATH, version-checked."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisProblem("redis-server is not on PATH and REDIS_URL is unset or "
                           "unreachable: " + INSTALL_HINT)
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisProblem(f"cannot run {binary} --version: {exc}") from exc
    version = re.search(r"v=([0-9.]+)", out)
    check_version(version.group(1) if version else out, binary)
    return binary


def private_server_spec(binary: str, port: int, data_dir: Path, env: dict[str, str]) -> ChildSpec:
    """A redis-server on 127.0.0.1 with no persistence: the stack's data dies with it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return ChildSpec(
        name="redis",
        argv=[binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", str(data_dir), "--loglevel", "warning"],
        env=env,
        ready_port=port,
        service=True,
    )
