#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_start_away.sh on a real Consul agent (-dev) as the store.
STORE=consul exec bash "$(dirname "$0")/test_start_away.sh"
