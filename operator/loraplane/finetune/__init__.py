"""FineTuneJob controller helpers that touch the outside world: object storage reads, schedules."""
