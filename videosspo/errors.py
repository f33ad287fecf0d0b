"""Errors the user can fix (config, data, paths, disk): the CLI prints their one-line message and exits 2.

Anything else is a bug and keeps its traceback. Each class also derives from the builtin a caller
would expect (ValueError, FileNotFoundError), so `except ValueError` keeps working.
"""

from __future__ import annotations

import argparse


class UserError(Exception):
    """A problem in what the user gave (config, data, paths) or in their machine (disk, a busy folder)."""


class ConfigError(UserError, ValueError):
    """A configuration value is unknown, of the wrong type, or impossible; or the YAML does not parse."""


class DataError(UserError, ValueError):
    """The data cannot train the run: a bad metadata row or column, no usable rows, too many unreadable clips."""


class PathError(UserError, FileNotFoundError):
    """A file or folder named by the user does not exist."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (and exit 2) like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")
