# omoi: one image for every process. Default command is the web process; run workers with
#   docker run ... omoi python -m app worker      (and one `python -m app beat`)
# Configuration comes from the environment (OMOI_*; see README and docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMOI_HOST=0.0.0.0 \
    OMOI_PORT=8080 \
    OMOI_DATA_DIR=/var/lib/omoi \
    OMOI_DATABASE_URL=sqlite:////var/lib/omoi/omoi.db

# git: omoi clones, commits and pushes. bubblewrap, util-linux (setpriv, prlimit) and socat: the local
# sandbox's jail, in which agents and verify commands run (docs/security.md). Without them, or without
# user namespaces, a worker refuses to run agents (fail closed). The jail needs user namespaces and its
# own /proc, which Docker's defaults forbid: run workers with
#   --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined
# (or use the Daytona provider). The web and beat processes need none of this.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates bubblewrap util-linux socat \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 omoi \
    && useradd --system --uid 10001 --gid omoi --home-dir /home/omoi --create-home omoi \
    && mkdir -p /var/lib/omoi && chown omoi:omoi /var/lib/omoi

WORKDIR /srv/omoi
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
RUN pip install .
# Templates, config/base.yaml and manifest.yml are read from the source tree next to app/
# (`python -m app` run from this directory imports ./app).
COPY templates ./templates
COPY config ./config
COPY manifest.yml Procfile ./

USER omoi
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OMOI_PORT', '8080'), timeout=4)"
CMD ["python", "-m", "app", "web"]
