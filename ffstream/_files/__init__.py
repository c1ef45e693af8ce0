"""The files ffstream writes and reads besides videos, one module per format: what each
field is, how it is checked on reading (every such file is untrusted input), and how it
is written. Every writer and reader of a format goes through its module.

- ``episode_json``: an episode's record (rate, rows, videos, cameras, timing, CPU);
- ``transcode_json``: a transcode destination's manifest of done jobs;
- ``lerobot_layout``: what is read of a LeRobot v3 dataset;
- ``png``: frames of non-streaming mode and the report's plots.
"""
