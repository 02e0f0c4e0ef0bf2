#!/bin/sh
# Serve /health over HTTP with busybox httpd; the role and version show in the body.
# As PID 1 a shell ignores SIGTERM unless it traps it: without the trap every `docker stop`
# (each compose recreate) would wait out its 10 s timeout.
mkdir -p /www
echo "{\"role\": \"${ROLE}\", \"status\": \"healthy\"}" > /www/health
httpd -f -p "${PORT:-8080}" -h /www &
trap 'kill $!; exit 0' TERM INT
wait
