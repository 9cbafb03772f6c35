"""Worker processes: which task queues, which workflows and activities."""
