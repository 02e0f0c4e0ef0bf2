#!/bin/sh
# Serve /health over HTTP with busybox httpd; the role and version show in the body.
mkdir -p /www
echo "{\"role\": \"${ROLE}\", \"status\": \"healthy\"}" > /www/health
exec httpd -f -p "${PORT:-8080}" -h /www
