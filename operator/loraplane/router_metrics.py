"""Names of the router's Prometheus metrics: the router exports them, the canary analysis reads them.

Every per-variant series carries the labels `namespace` and `chatbot` (the ChatbotDeployment),
`model` (its served name) and `variant`; below, {chatbot} stands for the first three. The router
serves them on its admin port (`--admin-port`, 9090 by default), not on the users' port.
"""

REQUESTS = "loraplane_router_requests_total"  # counter {chatbot, variant, code}
REQUEST_DURATION = "loraplane_router_request_duration_seconds"  # histogram {chatbot, variant}
TIME_TO_FIRST_TOKEN = "loraplane_router_time_to_first_token_seconds"  # histogram {chatbot, variant}
TOKENS = "loraplane_router_tokens_total"  # counter {chatbot, variant, kind=prompt|completion}
CACHE = "loraplane_router_cache_requests_total"  # counter {chatbot, variant, result=hit|miss}
FEEDBACK = "loraplane_router_feedback_score"  # histogram {chatbot, variant}, scores normalised to 0..1
COST = "loraplane_router_estimated_cost_total"  # counter {chatbot, variant}, currency units
QUEUE_DEPTH = "loraplane_router_queue_depth"  # gauge {upstream}
UPSTREAM_ERRORS = "loraplane_router_upstream_errors_total"  # counter {upstream, reason}
REJECTED = "loraplane_router_rejected_requests_total"  # counter {chatbot, reason}: refused before routing
ROUTING_TABLE_RELOADS = "loraplane_router_routing_table_reloads_total"  # counter {result=ok|rejected}
IN_FLIGHT = "loraplane_router_in_flight_requests"  # gauge {chatbot}: holding or waiting for a vLLM slot
