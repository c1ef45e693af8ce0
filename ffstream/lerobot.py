"""The LeRobot drop-in: ``install()`` makes LeRobot's recorder encode through ffstream.

``install()`` replaces LeRobot's ``StreamingVideoEncoder`` with ffstream's, which takes
LeRobot's arguments and configs; ``uninstall()`` puts LeRobot's own back. docs/lerobot.md
says what changes and what stays.
"""

from ._datasets.lerobot import install, installed, uninstall

__all__ = ["install", "installed", "uninstall"]
