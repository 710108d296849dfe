"""Export for CPU serving: ``python -m flowers_hf.export`` writes a run's model as ONNX (fp32 and int8), records and
compares it, and adds a section to the model card. Imports every layer below it (up to ``reporting``); nothing in
the package imports ``export``.
"""
