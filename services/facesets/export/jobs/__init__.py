"""The export service's jobs: each works in an export (or video plan) folder."""
