"""Console actions in Django admin: buttons on a record's page and actions on a list, each asking
for a reason on a page of its own, checking its permission (403 without it), and calling the same
function as the command line (actions.py). What it did, or why it did nothing, comes back as a
message on the record's page."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from orderhub.console import actions


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=actions.MAX_REASON,
                             help_text="Kept in the audit trail with your name and the time.")


class RestockForm(ReasonForm):
    quantity = forms.IntegerField(min_value=1, max_value=actions.MAX_RESTOCK)
    request_id = forms.UUIDField(widget=forms.HiddenInput)  # a second submit of this form does nothing


@dataclass
class ConsoleAction:
    name: str  # in the URL
    label: str  # on the button
    permission: str  # "console.retry_saga"
    run: Callable  # (actor, obj, cleaned form data) -> actions.Result
    applies: Callable = lambda obj: True  # show the button for this record?
    explain: str = ""
    form: type = ReasonForm


class ConsoleActionsMixin:
    """For a ModelAdmin: `console_actions` (a list of ConsoleAction) become buttons on the record's
    page (those the user may run, where they apply) and URLs `<id>/act/<name>/`."""

    console_actions: list[ConsoleAction] = []
    change_form_template = "console/change_form.html"

    def console_action(self, name) -> ConsoleAction:
        for action in self.console_actions:
            if action.name == name:
                return action
        raise PermissionDenied(f"no action {name}")

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [path("<path:object_id>/act/<str:name>/", self.admin_site.admin_view(self.act_view),
                     name="%s_%s_act" % info)] + super().get_urls()

    def buttons(self, request, obj):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [{"label": action.label, "url": reverse("admin:%s_%s_act" % info, args=[obj.pk, action.name])}
                for action in self.console_actions
                if request.user.has_perm(action.permission) and action.applies(obj)]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None:
            extra["console_buttons"] = self.buttons(request, obj)
            extra.update(self.console_context(request, obj))
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_actions(self, request):
        """List actions the user may not run are not offered (a viewer sees none)."""
        found = super().get_actions(request)
        return {name: entry for name, entry in found.items()
                if not hasattr(entry[0], "console_permission") or request.user.has_perm(entry[0].console_permission)}

    def console_context(self, request, obj) -> dict:
        """What the record's page shows besides its fields (a timeline, the audit trail)."""
        return {}

    def act_view(self, request, object_id, name):
        action = self.console_action(name)
        if not request.user.has_perm(action.permission):
            raise PermissionDenied
        obj = get_object_or_404(self.model, pk=object_id)
        back = reverse("admin:%s_%s_change" % (self.model._meta.app_label, self.model._meta.model_name),
                       args=[obj.pk])
        if request.method == "POST":
            form = action.form(request.POST)
            if form.is_valid():
                try:
                    result = action.run(actions.Actor.from_request(request), obj, form.cleaned_data)
                except actions.ActionRefused as exc:
                    self.message_user(request, f"Refused, nothing changed: {exc}", messages.ERROR)
                else:
                    level = messages.SUCCESS if result.changed else messages.WARNING
                    self.message_user(request, result.message, level)
                return HttpResponseRedirect(back)
        else:
            form = action.form(initial={"request_id": uuid.uuid4()})
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "object": obj,
                   "action": action, "form": form, "back": back, "title": f"{action.label}: {obj}"}
        return TemplateResponse(request, "console/act.html", context)


def list_action(console_action: ConsoleAction, objects_label="records"):
    """An admin list action that asks for one reason, then runs `console_action` on each selected
    record and reports how many changed and how many had nothing to do."""

    def run(modeladmin, request, queryset):
        if not request.user.has_perm(console_action.permission):
            raise PermissionDenied
        if "apply" in request.POST:
            form = console_action.form(request.POST)
            if form.is_valid():
                changed, unchanged, refused = 0, [], []
                for obj in queryset:
                    try:
                        result = console_action.run(actions.Actor.from_request(request), obj, form.cleaned_data)
                    except actions.ActionRefused as exc:
                        refused.append(f"{obj}: {exc}")
                        continue
                    if result.changed:
                        changed += 1
                    else:
                        unchanged.append(result.message)
                modeladmin.message_user(request, f"{console_action.label}: {changed} changed", messages.SUCCESS)
                for text in unchanged[:10]:
                    modeladmin.message_user(request, text, messages.WARNING)
                for text in refused[:10]:
                    modeladmin.message_user(request, f"Refused, nothing changed: {text}", messages.ERROR)
                return None
        else:
            form = console_action.form()
        context = {**modeladmin.admin_site.each_context(request), "opts": modeladmin.model._meta,
                   "action": console_action, "form": form, "queryset": queryset, "count": queryset.count(),
                   "action_name": request.POST.get("action"), "objects_label": objects_label,
                   "select_across": request.POST.get("select_across", "0"),
                   "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
                   "title": f"{console_action.label}: {queryset.count()} {objects_label}"}
        return TemplateResponse(request, "console/act_on_list.html", context)

    run.short_description = console_action.label + " (asks for a reason)"
    run.__name__ = f"console_{console_action.name}"
    run.console_permission = console_action.permission
    return run
