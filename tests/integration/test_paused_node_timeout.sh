#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The paused-node suite (test_paused_node.sh, Redis) with node A frozen past
# its CA request timeout (issuers' default 10 s) as well as its lease: its
# order fails when it wakes, and that failure must neither record a backoff
# nor mark the CA down; the lock check finds the lease lost and A takes B's
# certificate. (Seen in CI: A wrote a backoff and never said it lost the lock.)
PAUSE_EXTRA=12 exec bash "$(dirname "$0")/test_paused_node.sh"
