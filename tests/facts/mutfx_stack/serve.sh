#!/bin/sh
# Serve /health over HTTP with busybox httpd; the body names the role.
mkdir -p /www
echo "{\"role\": \"${ROLE}\", \"status\": \"healthy\"}" > /www/health
exec httpd -f -p 8080 -h /www
