"""User-facing errors (the CLI prints them as one line and exits non-zero) and warnings."""


class StylePuppetError(Exception):
    """Something the user can fix (bad input, missing weights, ...); the message says how."""


class WeightsError(StylePuppetError):
    """A weights file is missing, corrupt, of the wrong kind, or fails verification."""


class UnsafePickleError(WeightsError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class MediaError(StylePuppetError):
    """A video or image cannot be read or written."""


class OutputError(StylePuppetError, OSError):
    """A file or folder cannot be written (full disk, no permission, a file in the way); what was there before
    is left as it was. Also an OSError carrying the original ``errno`` and ``strerror``, so code that handles
    OSErrors still does."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno n] ..." rendering of errno and strerror
        return str(self.args[0]) if self.args else super().__str__()


class FolderInUseError(StylePuppetError):
    """Another process is running in the output folder."""


class NoFaceError(StylePuppetError):
    """No face was found where one is needed."""


class ConfigError(StylePuppetError):
    """A preset, option or config file is invalid."""


class UntrainedWarning(UserWarning):
    """Randomly initialised networks stand in for missing weights: the output shows no real face."""


class LookWarning(UserWarning):
    """The look image cannot be framed or drawn as asked: the animation may show another person."""
