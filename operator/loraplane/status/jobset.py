"""A training JobSet read as the Job facts a FineTuneJob's status is computed from. Pure.

`compute_status` reads a batch/v1 Job: its Complete/Failed conditions, active, failed,
startTime, completionTime, spec.suspend. A JobSet says the same in its own words: conditions
Completed and Failed (`status.terminalState`), restarts (`status.restarts`: each one recreated
every child Job), and its child Jobs carry the start time and the active pods. `jobset_as_job`
translates, so one status path serves both kinds of run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.states import Reason

# JobSet's reason when the set has restarted failurePolicy.maxRestarts times and failed.
REACHED_MAX_RESTARTS = "ReachedMaxRestarts"


def _true(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def jobset_finished(jobset: Mapping[str, Any]) -> bool:
    return bool(_true(jobset, "Completed") or _true(jobset, "Failed")
                or (jobset.get("status") or {}).get("terminalState"))


def jobset_as_job(jobset: Mapping[str, Any], child_jobs: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The JobSet as a Job-shaped object: same metadata, spec.suspend, and a Job's status fields."""
    st = jobset.get("status") or {}
    children = [j.get("status") or {} for j in child_jobs]
    restarts = int(st.get("restarts") or 0)
    status: dict[str, Any] = {"failed": restarts, "conditions": []}
    active = sum(int(c.get("active") or 0) for c in children)
    if not children:  # replicatedJobsStatus counts Jobs, not pods: enough to say it runs
        active = sum(int(r.get("active") or 0) for r in st.get("replicatedJobsStatus") or [])
    if active:
        status["active"] = active
    starts = sorted(c["startTime"] for c in children if c.get("startTime"))
    if starts:
        status["startTime"] = starts[0]
    done, failed = _true(jobset, "Completed"), _true(jobset, "Failed")
    if done or st.get("terminalState") == "Completed":
        status["succeeded"] = 1
        status["conditions"].append({"type": "Complete", "status": "True", "reason": (done or {}).get("reason", "")})
        end = (done or {}).get("lastTransitionTime")
    elif failed or st.get("terminalState") == "Failed":
        cond = failed or {}
        reason = cond.get("reason") or Reason.JOB_FAILED
        message = cond.get("message") or "the training JobSet failed"
        if reason == REACHED_MAX_RESTARTS:  # "the trainer failed <restarts> times", as for a Job's retries
            reason = Reason.BACKOFF_LIMIT_EXCEEDED
        status["conditions"].append({"type": "Failed", "status": "True", "reason": reason, "message": message})
        end = cond.get("lastTransitionTime")
    else:
        end = None
    if end:
        status["completionTime"] = end
    if status.get("completionTime") and not status.get("startTime"):
        status["startTime"] = jobset["metadata"].get("creationTimestamp")
    return {"apiVersion": jobset.get("apiVersion"), "kind": jobset.get("kind"), "metadata": jobset.get("metadata", {}),
            "spec": {"suspend": bool((jobset.get("spec") or {}).get("suspend"))}, "status": status}
