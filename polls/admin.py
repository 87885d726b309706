from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from polls.models import Choice, Question


class ChoiceInline(admin.TabularInline):
    model = Choice
    extra = 2
    fields = ["text", "vote_count"]
    readonly_fields = ["vote_count"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Choice]:
        return super().get_queryset(request).annotate(_votes=Count("vote_set"))

    @admin.display(description="votes")
    def vote_count(self, choice: Choice) -> int:
        return getattr(choice, "_votes", 0)


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["text", "pub_date", "closes_at", "total_votes"]
    list_filter = ["pub_date"]
    search_fields = ["text"]
    inlines = [ChoiceInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Question]:
        return super().get_queryset(request).annotate(_votes=Count("votes"))

    @admin.display(description="votes", ordering="_votes")
    def total_votes(self, question: Question) -> int:
        return getattr(question, "_votes", 0)
