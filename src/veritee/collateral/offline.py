"""Offline collateral: a bundle directory, and a chain that tries sources in order.

Offline is the default way to get collateral: an operator downloads a bundle once
(or receives it with the evidence) and verification needs no network at all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from veritee.collateral.base import (
    CollateralRequest,
    CollateralResponse,
    Fetcher,
    fetch_hint,
    unavailable,
)
from veritee.errors import CollateralUnavailableError

__all__ = ["FetcherChain", "OfflineBundle"]


class OfflineBundle:
    """Serve collateral from files under ``root`` at each request's ``bundle_path``.

    The path comes from code, but its parts (product names, chip ids) come from
    evidence, so it is treated as untrusted: absolute paths, ``..`` and symlinks
    that lead outside ``root`` are refused rather than followed.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"OfflineBundle({str(self.root)!r})"

    def fetch(self, request: CollateralRequest) -> CollateralResponse:
        where = f"offline bundle {self.root}"
        relative = PurePosixPath(request.bundle_path)
        raw_parts = request.bundle_path.split("/")
        if (
            relative.is_absolute()
            or "\\" in request.bundle_path
            or "\0" in request.bundle_path
            or any(part in ("", ".", "..") for part in raw_parts)
        ):
            raise unavailable(
                request,
                where,
                f"refusing bundle path {request.bundle_path!r}: it is not a plain relative path",
                hint="this is a bug in the caller; report it",
            )
        root = self.root.resolve()
        if not root.is_dir():
            raise unavailable(request, where, "the bundle directory does not exist")
        candidate = root.joinpath(*relative.parts)
        path = candidate.resolve()
        if not path.is_relative_to(root):
            raise unavailable(
                request,
                where,
                f"{request.bundle_path} leads outside the bundle (symlink to {path})",
                hint="replace the link with the file itself",
            )
        try:
            body = _read_bounded(path, request.max_bytes)
        except FileNotFoundError:
            raise unavailable(request, where, f"{request.bundle_path} is missing") from None
        except IsADirectoryError:
            raise unavailable(
                request, where, f"{request.bundle_path} is not a regular file"
            ) from None
        except _TooLarge as exc:
            raise unavailable(
                request,
                where,
                f"{request.bundle_path} is larger than the {request.max_bytes}-byte limit "
                f"({exc.size} bytes)",
                hint="check that the file is the right one",
            ) from None
        except _NotAFile:
            raise unavailable(
                request, where, f"{request.bundle_path} is not a regular file"
            ) from None
        except OSError as exc:
            raise unavailable(
                request, where, f"cannot read {request.bundle_path}: {exc.strerror or exc}"
            ) from exc
        return CollateralResponse(body=body, headers={}, source=f"offline:{path}")


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _NotAFile(Exception):
    pass


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` of a regular file; bounded even if it grows meanwhile."""
    # O_NONBLOCK: opening a FIFO must not hang (fstat then refuses it).
    # O_NOFOLLOW: ``path`` is already resolved, so a symlink here is a swap; refuse it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _NotAFile
        if info.st_size > max_bytes:
            raise _TooLarge(info.st_size)
        body = handle.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise _TooLarge(len(body))
    return body


class FetcherChain:
    """Try each fetcher in order; the first success wins.

    Only :class:`CollateralUnavailableError` moves on to the next source; any other
    exception is a bug and propagates. When every source fails, the error lists
    each attempt so the operator sees the whole picture at once.
    """

    def __init__(self, *fetchers: Fetcher) -> None:
        self.fetchers: tuple[Fetcher, ...] = fetchers

    def __repr__(self) -> str:
        return f"FetcherChain({', '.join(map(repr, self.fetchers))})"

    def fetch(self, request: CollateralRequest) -> CollateralResponse:
        failures: list[CollateralUnavailableError] = []
        for fetcher in self.fetchers:
            try:
                return fetcher.fetch(request)
            except CollateralUnavailableError as exc:
                failures.append(exc)
        if not failures:
            raise unavailable(request, "any source", "no collateral source is configured")
        if len(failures) == 1:
            raise failures[0]
        prefix = f"{request.description}: "
        reasons = "; ".join(
            f"({n}) {exc.message.removeprefix(prefix)}" for n, exc in enumerate(failures, 1)
        )
        hints = list(dict.fromkeys(exc.hint for exc in failures if exc.hint))
        raise CollateralUnavailableError(
            f"{request.description}: not available from any of {len(failures)} sources: {reasons}",
            hint="; ".join(hints) if hints else fetch_hint(request),
        ) from failures[-1]
