"""Each name's head: the small file that makes "latest" and auto-increment O(1).

``heads/<name>.json`` holds a version key: the greatest version the name has
had. It is a hint that every reader checks, never the truth (the metadata
files are), and it is kept without a lock:

- An explicit save raises the head, with compare-and-swap and durably,
  *before* its commit, so no committed explicit version is above the head
  (but version "1", which is the first auto-increment number whatever the
  head: mvcc.commit_explicit says why it needs no raise).
- An auto-increment save claims ``major(head) + 1`` with the usual
  create-if-absent commit, stepping up past numbers that exist, and raises
  the head *after* it: one compare-and-swap attempt, not fsynced, so the
  head may lag behind auto-increment numbers.
- Hence every version above the head is an auto-increment number, and those
  numbers form an unbroken run upward from the first integer above the head
  (a writer only steps past numbers that exist; deleted versions stay as
  tombstones). A reader finds the run's top by probing: one ``head`` request
  when the head is current, O(log k) when it lags by k.
- Where a probe is much cheaper than a head write (``Backend.head_slack`` >
  1: local disk), an auto-increment saver probes to the run's top before
  claiming, and the head is only written once it lags by ``head_slack``
  numbers or more. That only adds lag, which the argument above already
  allows for: it changes what a read costs, never what it finds.

A name whose head is missing or unreadable (written before heads existed,
copied without them) is served by a listing, which also rebuilds the head.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import msgspec

from registry.backends.base import Backend
from registry.core.layout import head_key, meta_key
from registry.core.versions import Version, version_from_key
from registry.exceptions import BackendError, ObjectNotFound, PreconditionFailed

logger = logging.getLogger(__name__)


class _HeadFile(msgspec.Struct, frozen=True):
    top: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_HeadFile)


class Head(msgspec.Struct, frozen=True):
    """A head as read: its version (None if unreadable) and the etag to swap on."""

    top: Version | None
    etag: str


def _decode(data: bytes) -> Version | None:
    try:
        return version_from_key(_decoder.decode(data).top)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def read(backend: Backend, name: str) -> tuple[bool, Version | None]:
    """Whether the head exists, and its version (None if missing or unreadable)."""
    try:
        return True, _decode(await backend.get(head_key(name)))
    except ObjectNotFound:
        return False, None


async def read_tagged(backend: Backend, name: str) -> Head | None:
    """The head with its etag, for a compare-and-swap; None if missing."""
    try:
        data, etag = await backend.get_tagged(head_key(name))
    except ObjectNotFound:
        return None
    head = Head(_decode(data), etag)
    if head.top is not None:
        _known(backend).rise(name, head.top)
    return head


async def write(
    backend: Backend, name: str, top: Version, *, over: Head | None, durable: bool
) -> bool:
    """Set the head to ``top`` if it is still ``over`` (None: still missing).

    False if another writer changed it first. ``durable=False`` is for hints
    that may lag: local disk then skips the fsyncs, and a failed write is
    only logged, since the operation it follows (a commit, a read) is done.
    """
    data = _encoder.encode(_HeadFile(top.key))
    put = backend.put if durable else backend.put_hint
    try:
        if over is None:
            await put(head_key(name), data, mode="create")
        else:
            await put(head_key(name), data, if_match=over.etag)
    except PreconditionFailed:
        return False
    except BackendError as exc:
        if durable:
            raise
        logger.info("head of %s left at its old version: %s", name, exc)
        return False
    _known(backend).rise(name, top)
    return True


def lags(backend: Backend, top: Version | None, found: Version) -> bool:
    """Whether a head at ``top`` (None: none yet, a new name's) is far enough
    behind the version ``found`` above it to be written now."""
    return found.major - (0 if top is None else top.major) >= backend.head_slack


def next_number(top: Version | None) -> int:
    """The auto-increment number after ``top``: its major number plus one."""
    return 1 if top is None else top.major + 1


async def _exists(backend: Backend, name: str, number: int) -> bool:
    return await backend.head(meta_key(name, str(number))) is not None


async def probe_above(backend: Backend, name: str, top: Version) -> Version:
    """The greatest version stored for ``name`` (tombstones included), given
    a head ``top``: the top of the run of auto-increment numbers above it,
    or ``top`` itself when nothing is above."""
    above = await top_of_run(backend, name, top.major + 1)
    if above is not None:
        return Version(str(above))
    # "2-rc.1" sorts below "2", which a writer may have claimed from an older head.
    release = Version(str(top.major))
    if release > top and await _exists(backend, name, top.major):
        return release
    return top


async def top_of_run(backend: Backend, name: str, first: int) -> int | None:
    """The last number of the run of stored versions ``first``, ``first + 1``,
    ...; None if ``first`` is not stored."""
    if not await _exists(backend, name, first):
        return None
    # Gallop up, then bisect: O(log k) requests for a run of k numbers.
    low, step = first, 1
    while await _exists(backend, name, low + step):
        low, step = low + step, step * 2
    high = low + step  # known missing
    while high - low > 1:
        middle = (low + high) // 2
        if await _exists(backend, name, middle):
            low = middle
        else:
            high = middle
    return low


class Known:
    """What this process knows of a backend's heads: a head only ever rises,
    so a version it was seen at is a floor (heads/ is never edited by hand).

    Explicit saves of one name in this process also wait their turn here and
    raise the head once for all of them, to the greatest waiting version,
    instead of racing each other's compare-and-swap.
    """

    LIMIT = 100_000  # names remembered before starting over

    def __init__(self) -> None:
        self.floors: dict[str, Version] = {}
        self.waiting: dict[str, list[Version]] = {}
        self.turns: dict[str, anyio.Lock] = {}

    def rise(self, name: str, top: Version) -> None:
        floor = self.floors.get(name)
        if floor is None or floor < top:
            if len(self.floors) >= self.LIMIT:
                self.floors.clear()
            self.floors[name] = top

    def seen(self, name: str) -> bool:
        return name in self.floors

    def covers(self, name: str, version: Version) -> bool:
        floor = self.floors.get(name)
        return floor is not None and floor >= version


def seen(backend: Backend, name: str) -> bool:
    """Whether this process has seen the head of ``name`` (so it exists)."""
    return _known(backend).seen(name)


def _known(backend: Backend) -> Known:
    state = backend.loop_state()  # its lock belongs to this event loop
    known = state.get("heads")
    if known is None:
        known = state["heads"] = Known()
    return known


async def raise_to(
    backend: Backend, name: str, version: Version, raise_once: Callable[[Version], Awaitable[None]]
) -> None:
    """Make the head at least ``version`` with ``raise_once(target)``, unless
    it is known to be; concurrent callers in this process share one raise."""
    known = _known(backend)
    if known.covers(name, version):
        return
    waiting = known.waiting.setdefault(name, [])
    waiting.append(version)
    turn = known.turns.setdefault(name, anyio.Lock())
    try:
        async with turn:
            if not known.covers(name, version):
                await anyio.lowlevel.checkpoint()  # let this batch's other saves line up
                target = max(waiting)
                await raise_once(target)
                known.rise(name, target)
    finally:
        waiting.remove(version)
        if not waiting:
            del known.waiting[name], known.turns[name]
