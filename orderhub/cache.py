"""The cache's serializer: JSON, never pickle. Whoever can write to Redis must not be able to run
code in the API and the workers (Django's default serializer unpickles whatever it reads). What
OrderHub caches (throttle histories, beat's tick, health results) is plain JSON. Integers are
stored bare, as Django's own serializer does, so incr() and decr() stay atomic in Redis."""
import json


class JSONSerializer:
    def dumps(self, obj):
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except ValueError:  # not JSON (a pickle an earlier release wrote): a miss, never unpickled
            return None
