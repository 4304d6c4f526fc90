"""Errors namesae raises on bad input; the CLI turns each into one clear line."""


class NamesaeError(Exception):
    """Base class of every error that means 'your input is wrong', not 'namesae is broken'."""


class StoreError(NamesaeError):
    """An embedding store is missing, damaged, or does not follow the format."""


class ConfigError(NamesaeError):
    """A config file or config value is invalid."""


class SpaceMismatchError(NamesaeError):
    """Two artefacts (store, SAE, decoder) live in different embedding spaces."""
