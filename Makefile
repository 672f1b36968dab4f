# runcell - top-level build. `make` builds every binary into build/; `make test` installs
# dependencies, builds and runs the whole suite; see `make help`.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
BUILD ?= build

CC ?= cc
CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation \
          -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -fstack-protector-strong \
          -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -pthread -Ilib
BASE_LDFLAGS := -pthread -Wl,-z,relro,-z,now
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(BASE_LDFLAGS) $(LDFLAGS)
LIBS = -lfcgi -lmicrohttpd -lcurl -lcjson -lssl -lcrypto -lz

SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_CC ?= clang
FUZZ_SAN = address,undefined
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,$(FUZZ_SAN) -fno-sanitize-recover=all \
             -D_GNU_SOURCE -Ilib -Iemulator -Irunner -Ioci -Ibroker -Ifcgi -Ilauncher -pthread
FUZZ_SECONDS ?= 60

# Binaries: name -> the file holding its main(); everything else under these directories goes
# into one archive that binaries, tests and fuzz targets link against.
MAIN_runcell-webhook := tools/runcell-webhook.c
MAIN_runcell-emulator := emulator/main.c
MAIN_runcell-runner := runner/main.c
MAIN_runcell-tool-executor := runner/executor_main.c
MAIN_runcell-oci := oci/cli.c
MAIN_runcell-fcgi := fcgi/main.c
MAIN_runcell-launcher := launcher/main.c
MAIN_runcell := launcher/admin.c
ALL_BIN_NAMES := runcell-webhook runcell-emulator runcell-runner runcell-tool-executor \
                 runcell-oci runcell-fcgi runcell-launcher runcell
BINS := $(foreach b,$(ALL_BIN_NAMES),$(if $(wildcard $(MAIN_$(b))),$(b)))
MAIN_SRCS := $(foreach b,$(ALL_BIN_NAMES),$(MAIN_$(b)))
MODULE_DIRS := lib emulator runner oci broker fcgi launcher
LIB_SRCS := $(filter-out $(MAIN_SRCS),$(wildcard $(MODULE_DIRS:%=%/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIBRC := $(BUILD)/libruncell.a
BIN_PATHS := $(BINS:%=$(BUILD)/%)

TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HARNESS_OBJ := $(BUILD)/obj/tests/unit/harness.o
TEST_HELPER_SRCS := $(filter-out tests/unit/harness.c $(TEST_SRCS),$(wildcard tests/unit/*.c))
TEST_HELPER_OBJS := $(TEST_HELPER_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: bench conformance all test test-reliability unit asan fuzz fuzz-smoke format check-format clean install deps demo help check-banned

all: $(BIN_PATHS) $(TEST_BINS) $(TEST_TOOLS)

help:
	@echo "make            build every binary into $(BUILD)/"
	@echo "make test       install dependencies, build, run the whole suite"
	@echo "make unit       run the whole suite without the dependency step"
	@echo "make fuzz       build the libFuzzer targets into $(BUILD)/fuzz/"
	@echo "make check-banned  banned functions and close-on-exec check only"
	@echo "make bench      benchmarks vs anchors; table in $(BUILD)/bench/results.md and docs/BENCHMARKS.md"
	@echo "make conformance  the official SDK worker against the emulator, every scenario, and runner/SDK parity"
	@echo "make asan       build and run the tests under ASan + UBSan (build/asan/)"
	@echo "make fuzz-smoke run each libFuzzer target for FUZZ_SECONDS (default 60)"
	@echo "make test-reliability  faults, load, scale-out, attacks, webhook fixtures, then every fuzz"
	@echo "                target briefly; LONG=1: the long variants (N>=50, 200 sessions, 100 across"
	@echo "                3 hosts) and 5 min per fuzz target (docs/RELIABILITY.md)"
	@echo "make demo       run the main job on the local emulator"
	@echo "make format | check-format | clean | install (PREFIX, DESTDIR)"

bench: all
	@BUILD=$(BUILD) bench/run.sh

conformance: all
	@BUILD=$(BUILD) tests/conformance/run.sh; s=$$?; BUILD=$(BUILD) tests/conformance/parity.sh || s=1; exit $$s

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBRC): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

.SECONDARY:
.SECONDEXPANSION:
$(BIN_PATHS): $(BUILD)/%: $$(patsubst %.c,$(BUILD)/obj/%.o,$$(MAIN_$$*)) $(LIBRC)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# The tool executor loads only the libraries it uses (not libcurl's tree): its RSS per session.
$(BUILD)/runcell-tool-executor: private ALL_LDFLAGS += -Wl,--as-needed

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(HARNESS_OBJ) $(TEST_HELPER_OBJS) $(LIBRC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(LIBRC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/tests/%.o: BASE_CFLAGS += -Itests/unit -Iemulator -Irunner -Ioci -Ibroker -Ifcgi -Ilauncher

test: deps
	@$(MAKE) --no-print-directory all
	@if command -v $(FUZZ_CC) >/dev/null; then $(MAKE) --no-print-directory fuzz; fi
	@BUILD=$(BUILD) tests/run.sh

# The reliability and security suite (issue 9, docs/RELIABILITY.md): the same scripts `make test`
# runs, selected by name, then each fuzz target for a while. LONG=1 turns on the long variants.
RELIABILITY_TESTS := reliability_* attack_scenarios webhook_fixtures broker_container \
	oci_workspace_quota oci_keyring
test-reliability: all fuzz
	@$(if $(LONG),RUNCELL_LONG=1) RC_TEST_ONLY="$(RELIABILITY_TESTS)" BUILD=$(BUILD) \
		RC_TEST_TIMEOUT=$(if $(LONG),7200,600) tests/run.sh
	@$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=$(if $(LONG),300,10)

# Run the suite without the dependency step (for a tree that is already set up).
unit: all
	@BUILD=$(BUILD) tests/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan CFLAGS="-O1 -g $(SAN_FLAGS)" \
		LDFLAGS="$(SAN_FLAGS)" all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		BUILD=build/asan tests/run.sh

# Fuzz targets: the modules are compiled once with coverage instrumentation into their own
# archive; each target links its LLVMFuzzerTestOneInput file against it.
FUZZ_LIB := $(BUILD)/fuzz/libruncell-fuzz.a
FUZZ_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_COMPILE_FLAGS = $(subst -fsanitize=fuzzer$(,),-fsanitize=fuzzer-no-link$(,),$(FUZZ_FLAGS))
, := ,

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_COMPILE_FLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB) $(LIBS)

fuzz: $(FUZZ_BINS)

fuzz-smoke: $(FUZZ_BINS)
	@scripts/fuzz-smoke.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

check-banned:
	@scripts/check-banned.py

FORMAT_FILES = $(shell git ls-files -co --exclude-standard "*.c" "*.h" 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)

check-format:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format: ok"

# Deployment files (docs/DEPLOYMENT.md). Units, tmpfiles.d and sysusers.d go where packaged
# files go, $(PREFIX)/lib/..., which systemd searches for PREFIX=/usr/local and /usr (for another
# PREFIX set UNITDIR=/etc/systemd/system etc.). The /usr/local/ paths written in the unit files
# are rewritten to $(PREFIX)/. Files in /etc/runcell are installed only when absent, so a
# re-install never overwrites the operator's configuration (secret files 0600 root; tmpfiles.d
# then makes runcell.env 0640 root:runcell-fcgi).
DATADIR = $(PREFIX)/share/runcell
DOCDIR ?= $(PREFIX)/share/doc/runcell
UNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
CONFDIR = /etc/runcell
UNIT_FILES := $(wildcard systemd/*.service systemd/*.socket)
SHARE_SCRIPTS := $(wildcard scripts/create-environment.sh scripts/create-agent.sh \
                   scripts/render-nginx-test-conf.sh scripts/test-e2e.sh)
EXAMPLE_FILES := $(wildcard examples/runcell.env examples/launcher.env examples/policy.json \
                   examples/tools-manifest.json)
# install_conf SRC DEST MODE: install SRC as DEST unless DEST exists.
install_conf = if [ -e $(DESTDIR)$(2) ]; then echo "kept $(2) (already there)"; \
               else install -m $(3) $(1) $(DESTDIR)$(2) && echo "installed $(2)"; fi

install: $(BIN_PATHS)
	install -d $(DESTDIR)$(BINDIR)
	$(if $(BIN_PATHS),install -m 0755 $(BIN_PATHS) $(DESTDIR)$(BINDIR)/)
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSUSERSDIR)
	@set -e; for f in $(UNIT_FILES); do \
		sed 's|/usr/local/|$(PREFIX)/|g' $$f >$(DESTDIR)$(UNITDIR)/$${f##*/}; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${f##*/}; echo "installed $(UNITDIR)/$${f##*/}"; done
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/runcell.conf >$(DESTDIR)$(TMPFILESDIR)/runcell.conf
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/runcell.sysusers >$(DESTDIR)$(SYSUSERSDIR)/runcell.conf
	chmod 0644 $(DESTDIR)$(TMPFILESDIR)/runcell.conf $(DESTDIR)$(SYSUSERSDIR)/runcell.conf
	install -d $(DESTDIR)$(DATADIR)/nginx $(DESTDIR)$(DATADIR)/examples $(DESTDIR)$(DATADIR)/scripts
	install -m 0644 nginx/runcell.conf nginx/test.conf $(DESTDIR)$(DATADIR)/nginx/
	install -m 0644 $(EXAMPLE_FILES) $(DESTDIR)$(DATADIR)/examples/
	install -m 0755 $(SHARE_SCRIPTS) $(DESTDIR)$(DATADIR)/scripts/
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	@$(call install_conf,examples/runcell.env,$(CONFDIR)/runcell.env,0600)
	@$(call install_conf,examples/launcher.env,$(CONFDIR)/launcher.env,0600)
	@$(call install_conf,examples/policy.json,$(CONFDIR)/policy.json,0600)
	@$(call install_conf,examples/tools-manifest.json,$(CONFDIR)/tools.json,0644)
	@echo "next (as root, see docs/DEPLOYMENT.md): systemd-sysusers; systemd-tmpfiles --create;" \
	      "edit $(CONFDIR)/*.env; systemctl daemon-reload;" \
	      "systemctl enable --now runcell-launcher.socket runcell-launcher.service runcell-fcgi.socket"

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/demo.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)
