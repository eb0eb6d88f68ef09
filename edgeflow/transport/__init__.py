"""Transports move frames between processes behind one Publisher/Subscriber contract.

``shm`` (this host, zero-copy) is here now; Redis and TCP transports for other hosts follow the same contract.
"""
