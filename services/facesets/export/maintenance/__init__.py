"""Maintenance jobs on an export folder: occlusion filter, restore. Every run is recorded in the
master manifest and reversible; nothing is deleted."""
