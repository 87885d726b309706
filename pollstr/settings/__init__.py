"""Pollstr settings, split by integration, driven by the environment (see .env.example).

`DJANGO_SETTINGS_MODULE=pollstr.settings` is this package: it imports each module below
in order, and Django reads the names they define. Each module reads its own variables
through the typed helpers of pollstr/env.py and refuses a bad value at start-up
(ImproperlyConfigured). A module that depends on another's setting imports it by name
(so the order of the imports below does not matter), and a setting is defined in one
module only (tests/test_settings.py). Listed in the order they depend on each other:

- `django`: Django and the libraries it runs with: the project, secrets, the database,
  Redis as cache and channel layer, websockets, sessions and security, accounts,
  languages and static files. Internationalisation (LANGUAGES, LOCALE_PATHS, and
  LocaleMiddleware in MIDDLEWARE) belongs here, beside LANGUAGE_CODE.
- `two_factor`: phone verification as the product has it, whichever provider sends the
  codes: the gateway and sandbox, codes and steps, the verified flag and remembered
  devices, numbers, rate limits, the SMS budget, the reconciler, retention, callbacks.
  Verification channels and their order belong here.
- `vonage`: what only the Vonage gateway reads (credentials, template, host, timeout),
  including anything Vonage's Verify workflow alone needs.
- `celery`: the broker, delivery guarantees, time limits and retries, beat's schedule,
  the worker's pool and queues.
- `operators`: logs, metrics, health and readiness, worker heartbeats.

Why by integration and not base/dev/prod: there is one set of settings for every
deployment (the environment decides), so the split that helps a reader is by what a
setting configures; each comment stands beside the setting it explains.

With no environment at all it runs the embedded default: SQLite, an in-process cache,
an in-process Celery worker and channel layer, and the sandbox SMS gateway.
"""

from __future__ import annotations

from pollstr.settings.celery import *  # noqa: F403
from pollstr.settings.django import *  # noqa: F403
from pollstr.settings.operators import *  # noqa: F403
from pollstr.settings.two_factor import *  # noqa: F403
from pollstr.settings.vonage import *  # noqa: F403
