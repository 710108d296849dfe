"""Reporting: the run folder, every plot, the model card and publishing to the Hub. Imports every layer below it
(``core`` to ``training``).
"""
