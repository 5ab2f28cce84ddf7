"""Names of the router's Prometheus metrics: the router exports them, the canary analysis reads them.

Every per-variant series carries the labels `model` (public chatbot name) and `variant`.
"""

REQUESTS = "loraplane_router_requests_total"  # counter {model, variant, code}
REQUEST_DURATION = "loraplane_router_request_duration_seconds"  # histogram {model, variant}
TIME_TO_FIRST_TOKEN = "loraplane_router_time_to_first_token_seconds"  # histogram {model, variant}
TOKENS = "loraplane_router_tokens_total"  # counter {model, variant, kind=prompt|completion}
CACHE = "loraplane_router_cache_requests_total"  # counter {model, variant, result=hit|miss}
FEEDBACK = "loraplane_router_feedback_score"  # histogram {model, variant}, scores normalised to 0..1
COST = "loraplane_router_estimated_cost_total"  # counter {model, variant}, currency units
QUEUE_DEPTH = "loraplane_router_queue_depth"  # gauge {upstream}
UPSTREAM_ERRORS = "loraplane_router_upstream_errors_total"  # counter {upstream, reason}
REJECTED = "loraplane_router_rejected_requests_total"  # counter {model, reason}: refused before routing
ROUTING_TABLE_RELOADS = "loraplane_router_routing_table_reloads_total"  # counter {result=ok|rejected}
