"""Routes per resource, each an APIRouter included under ``/api/v1`` by ``hub.app``."""
