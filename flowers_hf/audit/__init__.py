"""Auditing a data set before trusting it: ``python -m flowers_hf.audit SOURCE`` finds exact and near duplicates
(leaks across train and validation/test first), likely label errors, outliers and bad images, and writes
``audit.json``, ``audit.md`` and galleries; ``train.py --exclude audit.json`` acts on it. Imports every layer below
it (features through ``serving`` and ``training``); nothing in the package imports ``audit``.
"""
