"""Exit codes, and what each error the registry raises becomes on a shell."""

from __future__ import annotations

from registry.exceptions import (
    BackendError,
    ObjectNotFound,
    RegistryAliasConflict,
    RegistryIntegrityError,
    RegistryObjectNotFound,
    RegistryVersionConflict,
)
from registry.store.errors import (
    StoreAmbiguousObjectError,
    StoreLocationNotFound,
    StoreReadOnlyError,
)

OK = 0
FAILED = 1  # a check found problems (verify, doctor), or an error not listed below
USAGE = 2  # bad arguments, URI, name or option (click uses 2 as well)
NOT_FOUND = 3  # no such object, version, registry or mount
CONFLICT = 4  # the version exists already (versions are write-once), or an alias moved
UNAVAILABLE = 5  # the store could not be reached or refused us (endpoint, credentials, bucket)
INTERRUPTED = 130

EPILOG = (
    "Exit codes: 0 ok; 1 a check failed (verify, doctor) or another error; 2 bad usage "
    "(arguments, URI, name); 3 not found; 4 version exists or alias not as expected; 5 store unreachable, "
    "credentials refused or bucket missing; 130 interrupted."
)


class CLIError(Exception):
    """An error with the exit code it deserves and a message that says what to do."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> int:
    """The exit code of an error raised by a command."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, RegistryObjectNotFound | StoreLocationNotFound | ObjectNotFound):
        return NOT_FOUND
    if isinstance(exc, RegistryVersionConflict | RegistryAliasConflict | StoreReadOnlyError):
        return CONFLICT
    if isinstance(exc, RegistryIntegrityError):
        return FAILED
    if isinstance(exc, BackendError):
        return UNAVAILABLE
    if isinstance(exc, ValueError | TypeError | StoreAmbiguousObjectError):
        return USAGE
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    return FAILED


def one_line(exc: BaseException) -> str:
    """The error as one line (messages from deep inside may hold newlines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text
