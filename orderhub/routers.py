"""Routes each app's models to the database of the service that owns them (DESIGN §2)."""
SERVICE_APPS = {"inventory", "payments", "shipping", "notifications"}


class ServiceRouter:
    """Domain apps live in their own database; everything else lives in `default` (orderhub)."""

    def _db(self, app_label):
        return app_label if app_label in SERVICE_APPS else "default"

    def db_for_read(self, model, **hints):
        return self._db(model._meta.app_label)

    def db_for_write(self, model, **hints):
        return self._db(model._meta.app_label)

    def allow_relation(self, obj1, obj2, **hints):
        return self._db(obj1._meta.app_label) == self._db(obj2._meta.app_label)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == self._db(app_label)
