"""Whole datasets: the LeRobot drop-in and re-encoding files, folders and datasets."""
