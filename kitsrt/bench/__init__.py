"""`kitsrt bench`: latency per stage, backend and precision (latency.py) and throughput (throughput.py)."""
