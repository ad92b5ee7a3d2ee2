"""Bringing an Immich library in: `facesets immich stage` and its parts.

api: the Immich HTTP client; paths: where an asset goes under the staging folder; faces: face
size rules; state: state.json and queue.json; downloader: the threaded stager; stage: the job;
cli: flags and exit codes.
"""
