"""Automatic insights: what is wrong with a recorded session, with the evidence (issue #27).

``facts`` is what the rules read: aggregates every source can compute (the store in SQL,
``gpufl.insights.records`` from a log folder's records). ``rules`` turns facts into insights, pure Python with
no I/O, so the backend's API and ``gpufl summary`` say the same thing about the same session. This part
imports only the contract: client and backend may both import it.
"""
