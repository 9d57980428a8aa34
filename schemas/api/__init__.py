"""The HTTP API's bodies (contract section 3), one module per resource, as the routers in ``paypost.api.routes``.

``common`` holds what every resource shares: the strict request body and the error body.
"""
