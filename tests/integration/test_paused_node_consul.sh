#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The paused-node suite (test_paused_node.sh) on a real Consul agent (-dev) as the store.
STORE=consul exec bash "$(dirname "$0")/test_paused_node.sh"
