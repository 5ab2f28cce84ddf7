"""Exit codes of the trainer, which the training Job's podFailurePolicy acts on."""

OK = 0
# Retrying cannot help: bad dataset, refused license, bad spec. The Job fails at once.
BAD_INPUT = 42
# The adapter was trained and published, but rejected by a quality gate. Not retried either.
QUALITY_GATE_FAILED = 43
# Stopped on SIGTERM after checkpointing (128 + 15): a retryable failure, the retry resumes.
PREEMPTED = 143
