from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from polls.ballots import Ballot, ballot_of
from polls.models import CHOICES_OF_QUESTION, QUESTION_BY_ID, Question
from polls.services import AlreadyVoted, VoteRefused, vote_cast, vote_find
from two_factor.protection import verification_not_required, verified_session_required


class VoterRequest(HttpRequest):
    """A request on a view that @verified_session_required let through: a signed-in user.

    The decorator stands outermost on each view, so an unverified request is refused
    before anything else the view would say (a wrong method's 405 included).
    """

    user: User


def _get_published_question(question_id: int) -> Question:
    """The question as it is now (what a vote is decided on)."""
    question = QUESTION_BY_ID.first(question_id)
    if question is None or not question.is_published:
        raise Http404("No such poll.")
    return question


def _published_ballot(question_id: int) -> Ballot:
    """The question and its choices as a page shows them (polls/ballots.py: this
    process's copy, at most a moment old)."""
    ballot = ballot_of(question_id)
    if ballot is None or not ballot.question.is_published:
        raise Http404("No such poll.")
    return ballot


@require_GET
@verification_not_required
def index(request: HttpRequest) -> HttpResponse:
    questions = Question.objects.published()[:50]
    return render(request, "polls/index.html", {"questions": questions})


@verified_session_required
@never_cache  # Back after voting fetches it again: "You voted for", not a stale ballot
@require_GET
def detail(request: VoterRequest, question_id: int) -> HttpResponse:
    ballot = _published_ballot(question_id)
    question = ballot.question
    if question.is_closed:
        return redirect("polls:results", question_id=question.pk)
    # Someone who voted (or whose phone did) sees that, not a ballot they can't use.
    past_vote = vote_find(user=request.user, question=question)
    choices = [] if past_vote else ballot.choices
    context = {"question": question, "past_vote": past_vote, "choices": choices}
    return render(request, "polls/detail.html", context)


@verified_session_required
@require_POST
def vote(request: VoterRequest, question_id: int) -> HttpResponse:
    question = _get_published_question(question_id)
    try:
        vote_cast(user=request.user, question=question, choice_id=request.POST.get("choice"))
    except AlreadyVoted as refusal:
        messages.info(request, str(refusal))
        return redirect("polls:results", question_id=question.pk)
    except VoteRefused as refusal:
        if question.is_closed:
            messages.info(request, str(refusal))
            return redirect("polls:results", question_id=question.pk)
        context = {
            "question": question,
            "past_vote": None,
            "choices": CHOICES_OF_QUESTION.all(question.pk),
            "error_message": str(refusal),
        }
        return render(request, "polls/detail.html", context, status=400)
    messages.success(request, gettext("Thanks, your vote is counted."))
    return redirect("polls:results", question_id=question.pk)


@verified_session_required
@require_GET
def results(request: VoterRequest, question_id: int) -> HttpResponse:
    question = _published_ballot(question_id).question
    context = {
        **question.results(),
        "past_vote": vote_find(user=request.user, question=question),
    }
    return render(request, "polls/results.html", context)
