"""LoRA training of a FineTuneJob: load the base model, train, evaluate, publish.

`pipeline.run_job` is the whole run; `python -m loraplane_trainer run` (cli.py) is its entrypoint.
"""
