"""The API key's security scheme in the OpenAPI schema."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ClientKeyScheme(OpenApiAuthenticationExtension):
    target_class = "orderhub.apikeys.authentication.ClientKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>`: an API key (manage.py api_keys create CLIENT)."}
