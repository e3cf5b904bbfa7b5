"""berth's demo app: the classic docker-compose trio's web part.

Every page load counts a visit in Redis and logs it in PostgreSQL, so the page changes on each load and both
backing services are exercised. Connection settings come from the environment berth injects into the app:
DATABASE_URL (postgresql://user:password@host:port/db) and REDIS_URL (redis://host:port/0).
"""

import datetime
import os
import signal
import socket
import sys

import psycopg2
import redis
from flask import Flask, jsonify, render_template_string

app = Flask(__name__)

# Table creation is serialized with an advisory lock: two workers starting at once would otherwise race on
# CREATE TABLE IF NOT EXISTS (it is not atomic against a concurrent creation of the same table).
SCHEMA_LOCK = 5500
SCHEMA = """
CREATE TABLE IF NOT EXISTS visits (
    id         bigserial PRIMARY KEY,
    visited_at timestamptz NOT NULL DEFAULT now(),
    served_by  text NOT NULL,
    count      bigint NOT NULL
)
"""

PAGE = """<!doctype html>
<html>
<head><title>berth demo</title></head>
<body>
<h1>Hello from berth</h1>
<p>This page has been seen <strong id="count">{{ count }}</strong> times (counted in Redis).</p>
<p>Served by {{ host }} at {{ now }}.</p>
<h2>Latest visits (logged in PostgreSQL)</h2>
<ol>
{% for visit in visits %}  <li>#{{ visit[0] }} at {{ visit[1] }} by {{ visit[2] }}</li>
{% endfor %}</ol>
</body>
</html>
"""


def database():
    return psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=3)


def cache():
    return redis.Redis.from_url(
        os.environ["REDIS_URL"], socket_timeout=3, socket_connect_timeout=3
    )


def log_visit(count):
    """Records one visit and returns the latest ten, newest first."""
    connection = database()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cursor.execute(SCHEMA)
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO visits (served_by, count) VALUES (%s, %s)",
                (socket.gethostname(), count),
            )
            cursor.execute(
                "SELECT count, visited_at, served_by FROM visits ORDER BY id DESC LIMIT 10"
            )
            return cursor.fetchall()
    finally:
        connection.close()


@app.route("/")
def index():
    count = cache().incr("visits")
    visits = log_visit(count)
    return render_template_string(
        PAGE,
        count=count,
        visits=visits,
        host=socket.gethostname(),
        now=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
    )


@app.route("/health")
def health():
    """200 when both PostgreSQL and Redis answer, 503 naming the one that does not."""
    checks = {}
    try:
        connection = database()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        finally:
            connection.close()
        checks["database"] = "ok"
    except psycopg2.Error as error:
        checks["database"] = str(error).strip()
    try:
        cache().ping()
        checks["redis"] = "ok"
    except redis.RedisError as error:
        checks["redis"] = str(error)
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "unhealthy", **checks), 200 if healthy else 503


if __name__ == "__main__":
    # `python3 app.py` is PID 1 in its container, and the kernel drops a signal to PID 1 that has no handler:
    # without this, SIGTERM from `kubectl delete` (or a rollout) would wait out the whole grace period.
    # (Flask's reloader and gunicorn install their own.)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    app.run(
        host=os.environ.get("FLASK_RUN_HOST", "0.0.0.0"),
        port=int(os.environ.get("FLASK_RUN_PORT", "5500")),
    )
