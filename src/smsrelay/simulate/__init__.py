"""Market simulation (``smsrelay simulate``): a scenario run through a real worker.

``scenario`` (the file), ``market`` (true offers over time), ``traffic`` (arrivals),
``runner`` (worker, events, settling), ``optimum`` (offline optimum and baseline),
``report`` (figures from the store) and ``chart`` (the picture).
"""
