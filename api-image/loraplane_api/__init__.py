"""LoRAPlane's OpenAI-compatible fine-tuning API: /v1/files and /v1/fine_tuning/jobs in front of FineTuneJobs.

It imports the core (`loraplane`) and the trainer's dataset checks (`loraplane_trainer.dataset`, which needs
no torch), never the training code or the serving stack; import-linter holds it to that.
"""
