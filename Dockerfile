# One image for the web server, the Celery worker and beat (see docker-compose.yml).
FROM python:3.11-slim

# PRM_VAR_DIR: writable state (beat's schedule file) and the collected static files.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PRM_VAR_DIR=/var/lib/prm

RUN useradd --system --create-home --uid 10001 --user-group prm \
    && mkdir -p "$PRM_VAR_DIR" \
    && chown prm:prm "$PRM_VAR_DIR"

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change reuses this layer.
# kombu[redis]: kombu's Redis transport imports `packaging`, which only that extra pulls in
# (pyproject lists plain `redis`; `celery[redis]` there would make this redundant).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "kombu[redis]" \
    && rm /tmp/requirements.txt

# The source tree, installed in place: settings find templates/ and static/ next to the packages.
COPY . .
RUN pip install --no-deps -e .

USER prm

# Static files are part of the image (served by WhiteNoise). The key only lets settings load.
RUN DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret python manage.py collectstatic --no-input --verbosity 0

EXPOSE 8000
CMD ["gunicorn", "prm.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
