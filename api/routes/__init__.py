"""The HTTP API's routes, one router module per resource (``router = APIRouter()``)."""
