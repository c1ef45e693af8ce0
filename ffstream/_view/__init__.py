"""The live view: where each camera's encoded packets are shown while it records."""
