# SPDX-License-Identifier: Apache-2.0
# acme-spoa — one non-recursive Makefile.
#   make            build ./acme-spoa
#   make test       install missing packages, build, run unit + integration tests
#   make asan       the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       libFuzzer targets, bounded run
#   make bench      benchmark figures (ratios measured side by side)
#   make demo       Pebble + HAProxy + agent on loopback, one certificate on demand
#   make deb        the Debian package (dpkg-buildpackage), into build/deb/
#   make dist       the source tarball acme-spoa-$(VERSION).tar.gz, reproducible
#
# The version is the file VERSION, and only there; MAINTAINER is the package's
# maintainer (debian/control, debian/changelog), e.g. make deb MAINTAINER='Jo <jo@example.org>'.

PKGS     := openssl libcurl jansson hiredis libmicrohttpd ldns libpsl
CC       ?= cc
BUILD    ?= build
SAN      ?=
OPT      ?= -O2
VERSION  := $(shell cat VERSION 2>/dev/null)
MAINTAINER ?= acme-spoa developers <acme-spoa@example.org>
ifneq ($(shell echo '$(VERSION)' | grep -xE '[0-9][0-9A-Za-z.+~-]*'),$(VERSION))
$(error VERSION: "$(VERSION)" is not a version: a digit, then digits, letters, . + ~ -)
endif
ifeq ($(VERSION),)
$(error the file VERSION is missing or empty)
endif

WARN     := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter -Werror=implicit-function-declaration
CPPFLAGS += -I. -D_GNU_SOURCE -DACME_SPOA_VERSION='"$(VERSION)"'
CFLAGS   += -std=c11 -g $(OPT) $(WARN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpthread
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

LIB_SRC  := $(filter-out core/main.c,$(wildcard lib/*.c core/*.c spoa/*.c acme/*.c dns/*.c runtime/*.c storage/*.c admin/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libacmespoa.a
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
SHIM_SRC := $(wildcard tests/shim/*.c)
SHIM_SO  := $(SHIM_SRC:tests/shim/%.c=$(BUILD)/tools/%.so)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
BIN      := $(if $(filter build,$(BUILD)),acme-spoa,$(BUILD)/acme-spoa)

.PHONY: all deps test unit integration asan fuzz bench demo deb dist changelog print-maintainer haproxy-lines clean
all: $(BIN) $(UNIT_BIN) $(TOOL_BIN) $(SHIM_SO)

# every object names the version it was built for
$(BUILD)/%.o: %.c VERSION
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BIN): $(BUILD)/core/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# LD_PRELOAD shims (tests/shim/): never sanitized, they load into sanitized binaries
$(BUILD)/tools/%.so: tests/shim/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -g -O2 $(WARN) -shared -fPIC -o $@ $<

deps:
	@bash scripts/deps.sh

unit: all
	@BUILD=$(BUILD) BIN=$(BIN) bash tests/run.sh unit

integration: all
	@BUILD=$(BUILD) BIN=$(BIN) bash tests/run.sh integration

# HAProxy 3.0 and 3.4 for the suites that run on every line, built once per
# machine before the suites start (their own time limits need not cover the
# build); a missing source or a failed build is reported by the suites then
haproxy-lines:
	@for v in 3.0 3.4; do bash scripts/haproxy.sh $$v >/dev/null || echo "haproxy-lines: no HAProxy $$v (the suites will say)"; done

test: deps
	@$(MAKE) --no-print-directory all haproxy-lines
	@BUILD=$(BUILD) BIN=$(BIN) bash tests/run.sh all

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT=-O1 all haproxy-lines
	@BUILD=build-asan BIN=build-asan/acme-spoa SAN=1 \
	 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	 bash tests/run.sh all

fuzz: deps
	@bash tests/fuzz/run.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) BIN=$(BIN) bash tests/bench/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@BIN=$(BIN) bash scripts/demo.sh

deb: deps
	@VERSION='$(VERSION)' MAINTAINER='$(MAINTAINER)' bash scripts/deb.sh

# debian/changelog from NEWS.md, VERSION and MAINTAINER (committed; checked by test_release)
changelog:
	@VERSION='$(VERSION)' MAINTAINER='$(MAINTAINER)' bash scripts/changelog.sh > debian/changelog

print-maintainer:
	@echo '$(MAINTAINER)'

dist:
	@VERSION='$(VERSION)' bash scripts/dist.sh

clean:
	rm -rf build build-asan build-fuzz acme-spoa

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
