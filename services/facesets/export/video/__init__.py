"""Video targets: shots, sampled frames, face tracks, kept segments and ffmpeg cuts.

probe (ffmpeg discovery, durations, keyframes) -> shots (PySceneDetect) -> frames (sampling)
-> tracks (linking within a shot) -> segments (quality gate, merging) -> plan (frame log,
plan.json) -> cut (ffmpeg).
"""
