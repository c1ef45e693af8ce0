"""pytest plugin (``-p ffstream_lerobot_plugin``): LeRobot's tests run with ffstream's
drop-in installed, with its default settings, and the run says so in its header.

$FFSTREAM_LEROBOT_DROP_POLICY (pace, drop, repeat, block) runs them with another drop policy.
"""

import os

import ffstream._datasets.lerobot as adapter

POLICY = os.environ.get("FFSTREAM_LEROBOT_DROP_POLICY") or None


def pytest_configure(config):
    adapter.install(drop_policy=POLICY)
    from lerobot.datasets import dataset_writer, lerobot_dataset, video_utils

    for module in (video_utils, lerobot_dataset, dataset_writer):
        assert module.StreamingVideoEncoder is adapter.LeRobotEncoder, module


def pytest_report_header(config):
    policy = POLICY or "repeat (the default)"
    return f"ffstream.lerobot installed, drop_policy={policy}: LeRobot encodes through ffstream"
