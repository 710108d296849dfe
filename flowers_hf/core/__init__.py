"""Foundations every layer may use: the errors users see, the command-line plumbing (``--config`` presets,
logging, exit codes), disk-full handling and atomic folders, Hub ids and reachability. Imports nothing of
flowers_hf outside ``core``.
"""
