"""The one exception tree of facestream.

::

    StreamError                 anything facestream reports to the user as one line
    ├── InputError              a video, photo or argument the user gave is unusable
    │   ├── DecodeError         the file is not a video, or no frame of it decodes
    │   ├── ConfigError         a configuration file or value is invalid (names the line)
    │   └── GalleryError        the gallery cannot be used or refuses the change asked
    │       ├── NotFoundError   no such person, exemplar or appearance in the gallery
    │       ├── ConflictError   the change contradicts the gallery's state (already known,
    │                           merge with itself, the gallery is in use elsewhere)
    │       └── StorageError    the gallery cannot be written now (disk full, locked): retry
    ├── OutputError             the output directory cannot be written
    └── ModelError              model weights are missing, corrupt or cannot be fetched

Every message is a sentence that says what is wrong and what to do; the CLI prints it on one
line and exits non-zero (tracebacks only with ``--debug``).
"""


class StreamError(Exception):
    """Base of every error facestream reports to its user."""

    exit_code = 1


class InputError(StreamError):
    """An input given by the user (file, URL, argument) cannot be used."""

    exit_code = 2


class DecodeError(InputError):
    """The input is not a video, or none of it can be decoded."""


class ConfigError(InputError):
    """A configuration file or value is invalid; the message names the file and line."""


class GalleryError(InputError):
    """The gallery cannot be used (damaged, another embedder) or refuses a change."""


class NotFoundError(GalleryError):
    """The person (or their exemplar or appearance) named is not in the gallery."""


class ConflictError(GalleryError):
    """The change asked contradicts the gallery as it is."""


class StorageError(GalleryError):
    """The gallery's store cannot take the change now (its disk is full, it is locked or
    read-only); nothing of the change was kept, and it may succeed later."""


class OutputError(StreamError):
    """The output location cannot be written."""

    exit_code = 3


class ModelError(StreamError):
    """Model weights are missing, do not match their checksum, or cannot be fetched."""

    exit_code = 4
