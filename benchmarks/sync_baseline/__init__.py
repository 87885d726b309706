"""The synchronous design Pollstr replaces, as the Vonage Django tutorial builds it: the
provider call runs inside the request, served by ``runserver``. Only the benchmarks run
it, against the same Verify double as Pollstr."""
