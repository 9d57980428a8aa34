"""The pure posting domain: load statuses, Load Errors, transitions, money.

Plain Python only. No wire formats, drivers or frameworks are imported here.
"""
