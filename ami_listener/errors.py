"""One exception root. Foreign errors are translated at each adapter's edge."""


class AutoretryError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(AutoretryError):
    """The configuration file or environment is wrong; the message names the key."""


class ValidationError(AutoretryError):
    """Input from outside failed validation; ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StoreError(AutoretryError):
    """The database could not be opened, migrated or written."""


class NotFound(StoreError):
    """No call, batch or event with that id."""


class IllegalTransition(AutoretryError):
    """An event that the call's current status does not allow; nothing was changed."""


class AmiError(AutoretryError):
    """The AMI connection failed or Asterisk refused an action."""
