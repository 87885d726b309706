# Pollstr's one image: the web server (gunicorn with uvicorn workers), the Celery worker,
# beat, Flower and the migration job all run from it (see docker-compose.yml). Configuration comes from the environment at
# run time; nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 pollstr \
    && useradd --system --uid 10001 --gid pollstr --home-dir /app --no-create-home pollstr

# gettext's msgfmt compiles the translation catalogues below (locale/).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first: this layer is rebuilt only when the pins change.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# A throwaway key for these steps only: settings refuse to load without one. The
# translation catalogues are compiled here (never committed compiled).
RUN SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput -v0 \
    && SECRET_KEY=compilemessages-only-not-a-secret python manage.py compilemessages -v0 \
    && mkdir -p /app/var \
    && chown pollstr:pollstr /app/var

USER pollstr

EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "pollstr.web_server.UvicornWorker", "--graceful-timeout", "25", "--no-control-socket", "pollstr.asgi:application"]
