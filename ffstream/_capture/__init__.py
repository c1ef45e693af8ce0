"""Frames to files while they are captured: the writer and its thread, the pace and ring
between them, cameras × episodes, the non-streaming path and the recorder's loop."""
