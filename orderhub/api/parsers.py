"""Request parsers: DRF's JSON parser, with a body nested too deeply for the parser answered as a
bad request (RecursionError is not a ValueError, so DRF would let it become a 500)."""
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
