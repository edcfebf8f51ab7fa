from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.html import format_html

from orderhub.console import actions
from orderhub.console.admin_actions import ConsoleAction, ConsoleActionsMixin, ReasonForm, list_action
from orderhub.console.models import AuditEntry, Target
from orderhub.deadletters.models import DeadLetter
from orderhub.readonly_admin import ReadOnlyAdmin

# The first words of a reason say what kind of failure it was (orderhub/deadletters/reasons.py).
REASON_KINDS = [
    ("malformed", "malformed message"),
    ("bug", "a bug in a handler"),
    ("retries exhausted", "retries exhausted"),
    ("could not publish", "reply could not be published"),
    ("rabbitmq", "rejected by RabbitMQ (delivery limit, ...)"),
]


class ReasonKindFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason_kind"

    def lookups(self, request, model_admin):
        return REASON_KINDS

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(reason__istartswith=self.value())
        return queryset


def _replay_one(actor, letter, data):
    report = actions.replay_dead_letters(actor, actions.ReplaySelection(ids=[letter.id]), data["reason"])
    return actions.Result(bool(report.replayed), report.message if report.replayed else
                          f"nothing to do: dead letter {letter.id} is {DeadLetter.objects.get(id=letter.id).status}")


REPLAY = ConsoleAction(
    "replay", "Replay", "console.replay_dead_letter", _replay_one,
    applies=lambda letter: letter.status == DeadLetter.Status.ARCHIVED,
    explain="Publishes the message again, as it was, to the queue it died in. A command that already had its "
            "effect has none the second time (the worker's inbox).")
DISCARD = ConsoleAction(
    "discard", "Discard", "console.discard_dead_letter",
    lambda actor, letter, data: actions.discard_dead_letter(actor, letter.id, data["reason"]),
    applies=lambda letter: letter.status != DeadLetter.Status.DISCARDED,
    explain="Marks it dealt with. It stays in the archive, with when it was last seen.")


@admin.action(description="Replay (a dry-run count first, then asks for a reason)")
def replay_selected(modeladmin, request, queryset):
    """Replay the selected archived dead letters, or with "select all" every one matching the list's
    filters (queue, type, reason): a dry run first, then at most REPLAY_MAX_PER_REQUEST of them at
    REPLAY_RATE a second."""
    if not request.user.has_perm(REPLAY.permission):
        raise PermissionDenied
    selection = actions.ReplaySelection(ids=list(queryset.values_list("id", flat=True)))
    if "apply" in request.POST:
        form = ReasonForm(request.POST)
        if form.is_valid():
            report = actions.replay_dead_letters(actions.Actor.from_request(request), selection,
                                                 form.cleaned_data["reason"], limit=settings.REPLAY_MAX_PER_REQUEST)
            modeladmin.message_user(request, report.message, messages.SUCCESS if report.replayed else messages.WARNING)
            return None
    else:
        form = ReasonForm()
    context = {**modeladmin.admin_site.each_context(request), "opts": modeladmin.model._meta, "action": REPLAY,
               "form": form, "count": queryset.count(), "objects_label": "dead letters",
               "preview": actions.replay_preview(selection), "limit": settings.REPLAY_MAX_PER_REQUEST,
               "rate": settings.REPLAY_RATE, "action_name": "replay_selected",
               "select_across": request.POST.get("select_across", "0"),
               "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
               "title": f"Replay: {queryset.count()} dead letters"}
    return TemplateResponse(request, "console/act_on_list.html", context)


replay_selected.console_permission = REPLAY.permission


@admin.register(DeadLetter)
class DeadLetterAdmin(ConsoleActionsMixin, ReadOnlyAdmin):
    list_display = ["id", "queue", "message_type", "short_reason", "death_count", "status", "first_seen", "last_seen",
                    "replay_count"]
    list_filter = ["status", "queue", "message_type", ReasonKindFilter]
    search_fields = ["message_key", "reason"]
    search_help_text = "a message id, or words of the reason"
    readonly_fields = ["queue", "message_type", "status", "reason", "death_count", "first_seen", "last_seen",
                       "replayed_at", "replay_count", "discarded_at", "message_key", "body_shown", "headers",
                       "properties"]
    exclude = ["body", "body_base64"]
    console_actions = [REPLAY, DISCARD]
    actions = [replay_selected, list_action(DISCARD, "dead letters")]

    @admin.display(description="reason")
    def short_reason(self, letter):
        return letter.reason if len(letter.reason) <= 120 else letter.reason[:117] + "..."

    @admin.display(description="body")
    def body_shown(self, letter):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>{}", letter.body[:20000],
                           " (base64: not text)" if letter.body_base64 else "")

    def console_context(self, request, obj):
        return {"console_audit": list(AuditEntry.objects.filter(target_type=Target.DEAD_LETTER,
                                                                target_id=str(obj.id))[:100])}
