"""Reporting: the run folder, every plot, the model card and publishing to the Hub."""
