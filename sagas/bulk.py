"""Writing many changed rows in one statement: `UPDATE … FROM (VALUES …)`, for the batch of
replies (sagas/engine.py `replies_apply`), where Django's `bulk_update` would build a CASE per
column and row, and `save()` would cost a round trip per row."""
from django.db import connections, router


def update_rows(model, objects, fields):
    """Write `fields` of each of `objects` (instances of `model`, saved before) in one statement."""
    objects = list({obj.pk: obj for obj in objects}.values())
    if not objects:
        return
    using = router.db_for_write(model)
    connection = connections[using]
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    quote = connection.ops.quote_name
    names = [quote(field.column) for field in columns]
    assignments = ", ".join(f"{name} = v.{name}::{field.db_type(connection)}"
                            for name, field in zip(names[1:], columns[1:]))
    row = f"({', '.join(['%s'] * len(columns))})"
    sql = (f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
           f"FROM (VALUES {', '.join([row] * len(objects))}) AS v({', '.join(names)}) "
           f"WHERE t.{names[0]} = v.{names[0]}::{meta.pk.db_type(connection)}")
    for field in columns:
        if getattr(field, "auto_now", False):
            for obj in objects:
                field.pre_save(obj, add=False)
    params = [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objects for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
