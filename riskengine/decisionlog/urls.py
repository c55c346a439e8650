"""Decision log locations: which backend a URL names, and its password-free form.

>>> mask_url("postgresql://risk:s3cret@db:5432/risk?sslmode=require")
'postgresql://risk:***@db:5432/risk?sslmode=require'
>>> mask_url("postgresql://risk@db/risk?password=s3cret")
'postgresql://risk@db/risk?password=***'
>>> sqlite_path("sqlite:///data/log.db"), sqlite_path("sqlite:////var/log.db")
(PosixPath('data/log.db'), PosixPath('/var/log.db'))
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

__all__ = ["POSTGRES_SCHEMES", "SQLITE_SCHEME", "mask_url", "scrub", "secrets_of",
           "sqlite_path"]

SQLITE_SCHEME = "sqlite"
POSTGRES_SCHEMES = ("postgresql", "postgres")
_HIDDEN = "***"


def _split_query(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def mask_url(url: str) -> str:
    """`url` with the password (in the authority or a `password=` parameter) replaced."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{_HIDDEN}@{hostinfo}"
    query = parts.query
    if "password" in query.lower():
        pieces = [f"{k}={_HIDDEN}" if k.lower() == "password" else f"{k}={v}"
                  for k, v in _split_query(query)]
        query = "&".join(pieces)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> tuple[str, ...]:
    """Every password spelled in `url`, raw and percent-decoded, to scrub from messages."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            found.update({parts.password, unquote(parts.password)})
        found.update(v for k, v in _split_query(parts.query) if k.lower() == "password" and v)
    except ValueError:
        pass
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(message: str, secrets: tuple[str, ...]) -> str:
    """`message` with every secret replaced (drivers may echo connection parameters)."""
    for secret in secrets:
        message = message.replace(secret, _HIDDEN)
    return message


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative.db` or `sqlite:////absolute.db` URL.

    Three slashes then a relative path, four for an absolute one (the SQLAlchemy form).
    """
    rest = url[len(SQLITE_SCHEME) + 3:]  # after "sqlite://"
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"a SQLite URL is sqlite:///relative/file.db or sqlite:////absolute/"
                         f"file.db, not {url!r}")
    return Path(unquote(rest[1:].split("?", 1)[0])).expanduser()
