#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The fleet suite (test_cluster.sh) on Redis over TLS: redis-server --tls-port
# only (--port 0), a test CA, client certificates required (lib.sh redis-tls).
STORE=redis-tls exec bash "$(dirname "$0")/test_cluster.sh"
