#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the path of an HAProxy 3.4 binary: scripts/haproxy.sh 3.4 (built
# once per machine from ../shared/peers/haproxy-3.4.0.tar.gz, cached in
# /var/cache/acme-spoa). Kept for the callers of its old name; its old
# environment (HAPROXY34_TARBALL, HAPROXY34_CACHE) still works.
# Exit status as scripts/haproxy.sh's: 0 and the path, 2 no tarball, 1 failure.
set -euo pipefail
[ -z "${HAPROXY34_TARBALL:-}" ] || export HAPROXY_TARBALL=$HAPROXY34_TARBALL
[ -z "${HAPROXY34_CACHE:-}" ] || export HAPROXY_CACHE=$HAPROXY34_CACHE
exec bash "$(dirname "${BASH_SOURCE[0]}")/haproxy.sh" 3.4
